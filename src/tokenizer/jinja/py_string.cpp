#include "tokenizer/jinja/py_string.h"

#include <algorithm>
#include <cctype>

#include "core/check.h"
#include "tokenizer/jinja/limits.h"
#include "tokenizer/utf8.h"

namespace dpserve::jinja {

std::vector<size_t> cp_offsets(const std::string& s) {
  std::vector<size_t> off;
  for (size_t i = 0; i < s.size();) {
    off.push_back(i);
    size_t len;
    utf8::decode_at(s, i, &len);
    i += len;
  }
  off.push_back(s.size());
  return off;
}

size_t cp_count(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    size_t len;
    utf8::decode_at(s, i, &len);
    i += len;
  }
  return n;
}

bool py_space(uint32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto off = cp_offsets(s);
  const size_t n = off.size() - 1;
  std::vector<uint32_t> set;
  if (chars && chars->is_string()) {
    for (size_t i = 0; i < chars->s.size();) {
      size_t len;
      set.push_back(utf8::decode_at(chars->s, i, &len));
      i += len;
    }
  }
  auto strip_it = [&](size_t k) {
    size_t len;
    const uint32_t c = utf8::decode_at(s, off[k], &len);
    if (chars && chars->is_string()) return std::find(set.begin(), set.end(), c) != set.end();
    return py_space(c);
  };
  size_t b = 0, e = n;
  if (left) {
    while (b < e && strip_it(b)) ++b;
  }
  if (right) {
    while (e > b && strip_it(e - 1)) --e;
  }
  return s.substr(off[b], off[e] - off[b]);
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->is_none() || sep->is_undefined()) {
    auto off = cp_offsets(s);
    size_t k = 0;
    const size_t n = off.size() - 1;
    auto is_sp = [&](size_t i) {
      size_t len;
      return py_space(utf8::decode_at(s, off[i], &len));
    };
    while (k < n) {
      while (k < n && is_sp(k)) ++k;
      if (k >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = n;
        while (e > k && is_sp(e - 1)) --e;
        out.push_back(s.substr(off[k], off[e] - off[k]));
        break;
      }
      size_t j = k;
      while (j < n && !is_sp(j)) ++j;
      out.push_back(s.substr(off[k], off[j] - off[k]));
      k = j;
    }
    return out;
  }
  if (!sep->is_string()) fail("split(): separator must be a string");
  if (sep->s.empty()) fail("split(): empty separator");
  size_t pos = 0;
  for (size_t hit; (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) &&
                   (hit = s.find(sep->s, pos)) != std::string::npos;
       pos = hit + sep->s.size()) {
    out.push_back(s.substr(pos, hit - pos));
  }
  out.push_back(s.substr(pos));
  return out;
}

std::string py_replace(const std::string& s, const std::string& a, const std::string& b, int64_t count) {
  std::string out;
  if (a.empty()) {
    auto off = cp_offsets(s);
    int64_t done = 0;
    for (size_t k = 0; k + 1 < off.size(); ++k) {
      if (count < 0 || done < count) out += b, ++done;
      out.append(s, off[k], off[k + 1] - off[k]);
      check_string_size(out.size(), 0);
    }
    if (count < 0 || done < count) out += b;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  for (size_t hit; (count < 0 || done < count) && (hit = s.find(a, pos)) != std::string::npos; pos = hit + a.size()) {
    out.append(s, pos, hit - pos);
    out += b;
    ++done;
    check_string_size(out.size(), 0);
  }
  out.append(s, pos);
  return out;
}

std::string map_case(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 capitalize, 3 title
  std::string out;
  bool prev_cased = false;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    uint32_t c = utf8::decode_at(s, i, &len);
    const bool alpha = (c < 0x80 && std::isalpha(static_cast<int>(c))) || c >= 0x80;
    auto lower = [](uint32_t x) { return x < 0x80 ? static_cast<uint32_t>(std::tolower(static_cast<int>(x))) : x; };
    auto upper = [](uint32_t x) { return x < 0x80 ? static_cast<uint32_t>(std::toupper(static_cast<int>(x))) : x; };
    switch (mode) {
      case 0: c = lower(c); break;
      case 1: c = upper(c); break;
      case 2: c = first ? upper(c) : lower(c); break;
      case 3: c = prev_cased ? lower(c) : upper(c); break;
    }
    prev_cased = alpha;
    first = false;
    utf8::append_codepoint(out, c);
    i += len;
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace dpserve::jinja
