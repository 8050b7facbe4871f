#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

bool is_space_cp(uint32_t c) {
  // Rust char::is_whitespace (White_Space property).
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u >= 0x80;
}

// Length of the whitespace run ending at `end` (exclusive), not going below `floor`.
size_t space_run_before(std::string_view s, size_t end, size_t floor) {
  size_t b = end;
  while (b > floor) {
    size_t k = b - 1;
    while (k > floor && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
    size_t len = 0;
    if (!is_space_cp(utf8::decode_at(s, k, &len)) || k + len != b) break;
    b = k;
  }
  return end - b;
}

size_t space_run_after(std::string_view s, size_t begin) {
  size_t e = begin;
  while (e < s.size()) {
    size_t len = 0;
    if (!is_space_cp(utf8::decode_at(s, e, &len))) break;
    e += len;
  }
  return e - begin;
}

}  // namespace

void AddedTokens::add(const AddedToken& t) {
  if (t.content.empty()) return;
  tokens_.push_back(t);
  auto& bucket = by_first_byte_[static_cast<uint8_t>(t.content[0])];
  bucket.push_back(static_cast<uint32_t>(tokens_.size() - 1));
  std::stable_sort(bucket.begin(), bucket.end(), [&](uint32_t a, uint32_t b) {
    return tokens_[a].content.size() > tokens_[b].content.size();
  });
}

std::vector<AddedTokens::Segment> AddedTokens::split(std::string_view text, bool want_normalized) const {
  std::vector<Segment> out;
  size_t plain_begin = 0;  // start of the pending plain text
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (uint32_t k : by_first_byte_[static_cast<uint8_t>(text[i])]) {
      const AddedToken& t = tokens_[k];
      if (t.normalized != want_normalized) continue;
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t e = i + t.content.size();
        if ((i > 0 && is_word_byte(text[i - 1])) || (e < text.size() && is_word_byte(text[e]))) continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    if (hit->lstrip) b -= space_run_before(text, b, plain_begin);
    if (hit->rstrip) e += space_run_after(text, e);
    if (b > plain_begin) out.push_back({text.substr(plain_begin, b - plain_begin), -1});
    out.push_back({{}, hit->id});
    plain_begin = i = e;
  }
  if (plain_begin < text.size()) out.push_back({text.substr(plain_begin), -1});
  return out;
}

}  // namespace dpserve
