#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace dpserve::byte_level {
namespace {

// Printable Latin-1 bytes map to themselves; the rest (controls, space, 0x7F-0xA0, 0xAD) are
// shifted to U+0100 upwards in byte order, so every byte gets a visible, non-space char.
struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int, 512> to_byte;
  Tables() {
    to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = keep ? b : 256 + next++;
      utf8::append_codepoint(to_char[b], cp);
      to_byte[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::array<std::string, 256>& byte_to_char() { return tables().to_char; }

int char_to_byte(uint32_t cp) { return cp < 512 ? tables().to_byte[cp] : -1; }

}  // namespace dpserve::byte_level
