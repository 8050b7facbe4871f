#include "tokenizer/jinja/py_string.h"

#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cctype>
#include <iterator>

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
        // The rest, as Python leaves it: leading whitespace skipped, trailing whitespace kept
        // (' a  b  '.split(None, 1) is ['a', 'b  ']).
        out.push_back(s.substr(off[k]));
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

std::vector<std::string> py_splitlines(const std::string& s) {
  std::vector<std::string> l;
  size_t b = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    const auto c = static_cast<unsigned char>(s[k]);
    size_t len = 0;
    if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e)) {
      len = 1;
    } else if (c == 0xC2 && k + 1 < s.size() && static_cast<unsigned char>(s[k + 1]) == 0x85) {
      len = 2;
    } else if (c == 0xE2 && k + 2 < s.size() && static_cast<unsigned char>(s[k + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[k + 2]) == 0xA8 || static_cast<unsigned char>(s[k + 2]) == 0xA9)) {
      len = 3;
    }
    if (len == 0) continue;
    charge_items(1, 0);
    l.push_back(s.substr(b, k - b));
    if (c == '\r' && k + 1 < s.size() && s[k + 1] == '\n') len = 2;
    k += len - 1;
    b = k + 1;
  }
  if (b < s.size()) l.push_back(s.substr(b));
  return l;
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

namespace {

struct SpecialCase {
  uint32_t cp;
  const char* upper;  // "" where the simple mapping holds
  const char* lower;
  const char* title;  // "" where the title case is the upper case
};
constexpr SpecialCase kSpecial[] = {
#include "tokenizer/jinja/special_casing.inc"
};

const SpecialCase* special_case(uint32_t c) {
  auto it = std::lower_bound(std::begin(kSpecial), std::end(kSpecial), c,
                             [](const SpecialCase& s, uint32_t x) { return s.cp < x; });
  return it != std::end(kSpecial) && it->cp == c ? it : nullptr;
}

// The C library's Unicode tables (simple one-to-one case mappings) in the C.UTF-8 locale, which
// glibc has built in; null (ASCII only) should a C library lack it.
locale_t unicode_ctype() {
  static const locale_t loc = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(nullptr));
    return l ? l : newlocale(LC_CTYPE_MASK, "C.utf8", locale_t(nullptr));
  }();
  return loc;
}

uint32_t simple_upper(uint32_t c) {
  if (c < 0x80) return static_cast<uint32_t>(std::toupper(static_cast<int>(c)));
  const locale_t l = unicode_ctype();
  return l ? static_cast<uint32_t>(towupper_l(static_cast<wint_t>(c), l)) : c;
}

uint32_t simple_lower(uint32_t c) {
  if (c < 0x80) return static_cast<uint32_t>(std::tolower(static_cast<int>(c)));
  const locale_t l = unicode_ctype();
  return l ? static_cast<uint32_t>(towlower_l(static_cast<wint_t>(c), l)) : c;
}

// Python's "cased": a letter with an upper or lower case (digits and CJK are not).
bool is_cased(uint32_t c) {
  if (c < 0x80) return std::isalpha(static_cast<int>(c)) != 0;
  const locale_t l = unicode_ctype();
  return l && (iswupper_l(static_cast<wint_t>(c), l) || iswlower_l(static_cast<wint_t>(c), l));
}

// Python's str.isspace (what re's \s matches in a str pattern).
bool is_space(uint32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
  const locale_t l = unicode_ctype();
  return c == 0x85 || c == 0xA0 || (l && iswspace_l(static_cast<wint_t>(c), l));
}

}  // namespace

// As Python's str methods: full case mappings (ß -> SS, the ligatures, Greek with a subscript
// iota), capital sigma lowered to final sigma at a word's end, title case where it differs from
// upper case (Dž, Georgian).
std::string map_case(const std::string& s, int mode) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    cps.push_back(utf8::decode_at(s, i, &len));
    i += len;
  }
  std::string out;
  bool prev_cased = false, word_start = true;
  for (size_t k = 0; k < cps.size(); ++k) {
    const uint32_t c = cps[k];
    const SpecialCase* sc = c >= 0x80 ? special_case(c) : nullptr;
    auto lower = [&] {
      if (sc && *sc->lower) return out.append(sc->lower), void();
      // Final_Sigma: a capital sigma after a cased letter and not before one is the final form.
      if (c == 0x3A3 && k > 0 && is_cased(cps[k - 1]) && !(k + 1 < cps.size() && is_cased(cps[k + 1])))
        return utf8::append_codepoint(out, 0x3C2);
      utf8::append_codepoint(out, simple_lower(c));
    };
    auto upper = [&] {
      if (sc && *sc->upper) return out.append(sc->upper), void();
      utf8::append_codepoint(out, simple_upper(c));
    };
    auto title = [&] {
      if (sc && *sc->title) return out.append(sc->title), void();
      upper();
    };
    switch (mode) {
      case kLower: lower(); break;
      case kUpper: upper(); break;
      case kCapitalize: k == 0 ? title() : lower(); break;
      case kTitle: prev_cased ? lower() : title(); break;
      case kJinjaTitle: word_start ? upper() : lower(); break;
    }
    prev_cased = is_cased(c);
    word_start = is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    check_string_size(out.size(), 0);
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
