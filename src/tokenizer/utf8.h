// UTF-8 validation, lossy repair and a streaming byte -> text sink used by every decoder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dpserve::utf8 {

enum class Status { kValid, kInvalid, kIncomplete };
struct Scan {
  Status status;
  size_t len;  // bytes of the char (valid), of the maximal invalid subpart, or present so far
};
// Looks at the sequence starting at s[i] (i < s.size()).
Scan scan(std::string_view s, size_t i);

bool is_valid(std::string_view s);
// Each maximal invalid subsequence becomes U+FFFD (the Unicode "maximal subpart" practice).
std::string repair(std::string_view s);
void append_codepoint(std::string& out, uint32_t cp);
// Decodes the (valid) char at s[i], storing its length in *len.
uint32_t decode_at(std::string_view s, size_t i, size_t* len);

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Bytes in, text out: emits only complete chars, holds back an incomplete tail until more bytes
// arrive, and repairs invalid bytes exactly as repair() does on the whole byte string.
class Sink {
 public:
  void push(std::string_view bytes, std::string& out);
  void push_byte(uint8_t b, std::string& out);
  void finish(std::string& out);

 private:
  void drain(std::string& out, bool final);
  std::string pending_;
};

}  // namespace dpserve::utf8
