#include "tokenizer/utf8.h"

namespace dpserve::utf8 {

Scan scan(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {Status::kValid, 1};
  size_t n = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 == 0xE0) {
    n = 3, lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    n = 3;
  } else if (b0 == 0xED) {
    n = 3, hi = 0x9F;  // no surrogates
  } else if (b0 == 0xF0) {
    n = 4, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    n = 4;
  } else if (b0 == 0xF4) {
    n = 4, hi = 0x8F;
  } else {
    return {Status::kInvalid, 1};
  }
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {Status::kIncomplete, k};
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {Status::kInvalid, k};
  }
  return {Status::kValid, n};
}

bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    Scan r = scan(s, i);
    if (r.status != Status::kValid) return false;
    i += r.len;
  }
  return true;
}

std::string repair(std::string_view s) {
  if (is_valid(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    Scan r = scan(s, i);
    if (r.status == Status::kValid) {
      out.append(s.substr(i, r.len));
    } else {
      out.append(kReplacement);
    }
    i += r.len;
  }
  return out;
}

void append_codepoint(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t decode_at(std::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *len = 1;
    return b0;
  }
  Scan r = scan(s, i);
  if (r.status != Status::kValid) {
    *len = r.len;
    return 0xFFFD;
  }
  *len = r.len;
  uint32_t cp = b0 & (r.len == 2 ? 0x1F : r.len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < r.len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  return cp;
}

void Sink::push(std::string_view bytes, std::string& out) {
  pending_.append(bytes);
  drain(out, false);
}

void Sink::push_byte(uint8_t b, std::string& out) {
  pending_.push_back(static_cast<char>(b));
  drain(out, false);
}

void Sink::finish(std::string& out) { drain(out, true); }

void Sink::drain(std::string& out, bool final) {
  size_t i = 0;
  while (i < pending_.size()) {
    Scan r = scan(pending_, i);
    if (r.status == Status::kIncomplete && !final) break;
    if (r.status == Status::kValid) {
      out.append(pending_, i, r.len);
    } else {
      out.append(kReplacement);
    }
    i += r.len;
  }
  pending_.erase(0, i);
}

}  // namespace dpserve::utf8
