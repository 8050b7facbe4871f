#include "constrain/regex_compiler.h"

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

constexpr int kMaxRegexNesting = 200;

CodepointSet digit() { return CodepointSet::of('0', '9'); }
CodepointSet word() {
  CodepointSet s = CodepointSet::of('a', 'z');
  s.add('A', 'Z');
  s.add('0', '9');
  s.add('_');
  return s;
}
CodepointSet space() {
  CodepointSet s = CodepointSet::of('\t', '\r');  // \t \n \v \f \r
  s.add(' ');
  return s;
}
CodepointSet ascii() { return CodepointSet::of(0, 0x7F); }
CodepointSet non_ascii() { return CodepointSet::of(0x80, CodepointSet::kMax); }
// ASCII characters no dialect counts as whitespace: Python's \s also takes \x1c-\x1f.
CodepointSet ascii_non_space() {
  CodepointSet s = space();
  s.add(0x1C, 0x1F);
  return s.complement().intersect(ascii());
}
// `.`: any character but the line terminators of either dialect.
CodepointSet dot() {
  CodepointSet s;
  s.add('\n');
  s.add('\r');
  s.add(0x2028, 0x2029);
  return s.complement();
}

class RegexParser {
 public:
  RegexParser(Grammar& g, std::string_view p, const RegexOptions& o) : g_(g), p_(p), o_(o) {}

  ExprId run() {
    ExprId e = parse_alternation(0);
    if (pos_ < p_.size()) error(pos_, "unbalanced ')'");
    return e;
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    fail("regex: {} at offset {} in '{}'", what, at, p_);
  }

  bool more() const { return pos_ < p_.size(); }
  char peek() const { return p_[pos_]; }

  uint32_t next_codepoint() {
    const auto c0 = uint8_t(p_[pos_]);
    int n = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : (c0 >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + size_t(n) > p_.size()) error(pos_, "invalid UTF-8");
    uint32_t cp = n == 1 ? c0 : n == 2 ? (c0 & 0x1F) : n == 3 ? (c0 & 0x0F) : (c0 & 0x07);
    for (int i = 1; i < n; ++i) {
      const auto c = uint8_t(p_[pos_ + size_t(i)]);
      if ((c & 0xC0) != 0x80) error(pos_, "invalid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    pos_ += size_t(n);
    return cp;
  }

  ExprId chars(const CodepointSet& s) { return char_class_expr(g_, s, o_.json_string); }

  // Top level (depth 0) handles the anchors: ^ first and $ last in an alternative.
  ExprId parse_alternation(int depth) {
    if (depth > kMaxRegexNesting) error(pos_, "groups nest too deeply");
    std::vector<ExprId> alts;
    for (;;) {
      alts.push_back(parse_sequence(depth));
      if (more() && peek() == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    return g_.alt(std::move(alts));
  }

  ExprId parse_sequence(int depth) {
    std::vector<ExprId> items;
    bool anchored_start = false, anchored_end = false;
    while (more() && peek() != '|' && peek() != ')') {
      if (peek() == '^') {
        if (depth != 0 || !items.empty() || anchored_start) error(pos_, "'^' is only supported at the start of the pattern");
        anchored_start = true;
        ++pos_;
        continue;
      }
      if (peek() == '$') {
        const size_t at = pos_++;
        if (depth != 0 || (more() && peek() != '|')) error(at, "'$' is only supported at the end of the pattern");
        anchored_end = true;
        continue;
      }
      items.push_back(parse_quantified(depth));
    }
    if (depth == 0 && o_.search) {
      // Unanchored ends match anywhere: anything may come before or after.
      const ExprId any = g_.star(chars(CodepointSet::any()));
      if (!anchored_start) items.insert(items.begin(), any);
      if (!anchored_end) items.push_back(any);
    }
    return g_.seq(std::move(items));
  }

  ExprId parse_quantified(int depth) {
    const size_t at = pos_;
    ExprId atom = parse_atom(depth);
    if (!more()) return atom;
    int32_t lo = -1, hi = -1;
    const char c = peek();
    if (c == '*') {
      lo = 0;
      ++pos_;
    } else if (c == '+') {
      lo = 1;
      ++pos_;
    } else if (c == '?') {
      lo = 0;
      hi = 1;
      ++pos_;
    } else if (c == '{') {
      if (!parse_braces(lo, hi)) return atom;  // not a quantifier: a literal '{' comes next
    } else {
      return atom;
    }
    // Lazy (?) and possessive (+) forms match the same strings.
    if (more() && (peek() == '?' || peek() == '+')) ++pos_;
    if (more() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{')) {
      int32_t a, b;
      const size_t save = pos_;
      if (peek() != '{' || parse_braces(a, b)) error(save, "multiple repeat");
    }
    try {
      return g_.repeat(atom, lo, hi);
    } catch (const Error& e) {
      error(at, e.what());
    }
  }

  // {n}, {n,}, {n,m}, {,m}; false (position unchanged) when the text is not a quantifier.
  bool parse_braces(int32_t& lo, int32_t& hi) {
    const size_t start = pos_;
    size_t i = pos_ + 1;
    auto number = [&](int32_t& out) {
      const size_t b = i;
      int64_t v = 0;
      while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9') {
        v = std::min<int64_t>(v * 10 + (p_[i] - '0'), int64_t(1) << 31);
        ++i;
      }
      out = int32_t(std::min<int64_t>(v, INT32_MAX));
      return i > b;
    };
    int32_t a = 0, b = -1;
    const bool has_a = number(a);
    if (i < p_.size() && p_[i] == '}') {
      if (!has_a) return false;
      lo = hi = a;
      pos_ = i + 1;
      return true;
    }
    if (i >= p_.size() || p_[i] != ',') return false;
    ++i;
    const bool has_b = number(b);
    if (i >= p_.size() || p_[i] != '}') return false;
    if (!has_a && !has_b) return false;
    lo = has_a ? a : 0;
    hi = has_b ? b : -1;
    pos_ = i + 1;
    if (hi >= 0 && lo > hi) error(start, fmt::format("repetition {{{},{}}} has min above max", lo, hi));
    return true;
  }

  ExprId parse_atom(int depth) {
    const size_t at = pos_;
    const char c = peek();
    switch (c) {
      case '(': {
        ++pos_;
        if (more() && peek() == '?') {
          ++pos_;
          if (!more()) error(at, "unterminated group");
          const char k = peek();
          if (k == ':') {
            ++pos_;
          } else if (k == 'P' && pos_ + 1 < p_.size() && p_[pos_ + 1] == '<') {
            pos_ += 2;
            skip_group_name(at);
          } else if (k == '<' && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' && p_[pos_ + 1] != '!') {
            ++pos_;
            skip_group_name(at);
          } else if (k == '=' || k == '!' || k == '<') {
            error(at, "lookaround assertions are not supported");
          } else if (k == 'P' && pos_ + 1 < p_.size() && p_[pos_ + 1] == '=') {
            error(at, "backreferences are not supported");
          } else if (k == '#') {
            error(at, "comments in patterns are not supported");
          } else {
            error(at, "inline flags and other (?...) groups are not supported");
          }
        }
        ExprId e = parse_alternation(depth + 1);
        if (!more() || peek() != ')') error(at, "missing ')'");
        ++pos_;
        return e;
      }
      case ')':
        error(at, "unbalanced ')'");
      case '*':
      case '+':
      case '?':
        error(at, "nothing to repeat");
      case '[':
        return chars(parse_class());
      case '.':
        ++pos_;
        return chars(dot());
      case '\\':
        return parse_escape(false, nullptr);
      default: {
        const uint32_t cp = next_codepoint();
        return chars(CodepointSet::of(cp, cp));
      }
    }
  }

  void skip_group_name(size_t at) {
    while (more() && peek() != '>') ++pos_;
    if (!more()) error(at, "unterminated group name");
    ++pos_;
  }

  // After '\': a class (\d ...) or one character. Inside a class the result goes to `narrow` (the
  // characters every dialect puts in it) and `wide` (those some dialect does, for use under a
  // negation) and the returned expression is unused.
  ExprId parse_escape(bool in_class, CodepointSet* narrow, CodepointSet* wide = nullptr) {
    const size_t at = pos_;
    ++pos_;
    if (!more()) error(at, "trailing backslash");
    const char c = p_[pos_++];
    CodepointSet s, w;
    bool shorthand = false;
    auto hex = [&](size_t n) {
      uint32_t v = 0;
      for (size_t k = 0; k < n; ++k) {
        if (!more() || !std::isxdigit(uint8_t(peek()))) error(at, "bad hex escape");
        const char h = p_[pos_++];
        v = v * 16 + uint32_t(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      return v;
    };
    switch (c) {
      // Narrow: ASCII meanings both dialects share. Wide: Python's Unicode \d \w \s reach past
      // ASCII, and its \s takes \x1c-\x1f too.
      case 'd': s = digit(); w = non_ascii(); w.add(digit()); shorthand = true; break;
      case 'w': s = word(); w = non_ascii(); w.add(word()); shorthand = true; break;
      case 's': s = space(); w = non_ascii(); w.add(space()); w.add(0x1C, 0x1F); shorthand = true; break;
      case 'D': s = digit().complement().intersect(ascii()); w = digit().complement(); shorthand = true; break;
      case 'W': s = word().complement().intersect(ascii()); w = word().complement(); shorthand = true; break;
      case 'S': s = ascii_non_space(); w = space().complement(); shorthand = true; break;
      case 'n': s = CodepointSet::of('\n', '\n'); break;
      case 't': s = CodepointSet::of('\t', '\t'); break;
      case 'r': s = CodepointSet::of('\r', '\r'); break;
      case 'f': s = CodepointSet::of('\f', '\f'); break;
      case 'v': s = CodepointSet::of('\v', '\v'); break;
      case '0': s = CodepointSet::of(0, 0); break;
      case 'x': {
        const uint32_t v = hex(2);
        s = CodepointSet::of(v, v);
        break;
      }
      case 'u': {
        uint32_t v;
        if (more() && peek() == '{') {
          ++pos_;
          v = 0;
          size_t digits = 0;
          while (more() && peek() != '}') {
            v = v * 16 + hex(1);
            if (++digits > 6) error(at, "bad \\u{...} escape");
          }
          if (!more()) error(at, "bad \\u{...} escape");
          ++pos_;
        } else {
          v = hex(4);
        }
        if (v > CodepointSet::kMax || (v >= 0xD800 && v <= 0xDFFF)) error(at, "escape is not a Unicode scalar value");
        s = CodepointSet::of(v, v);
        break;
      }
      case 'U': {
        const uint32_t v = hex(8);
        if (v > CodepointSet::kMax || (v >= 0xD800 && v <= 0xDFFF)) error(at, "escape is not a Unicode scalar value");
        s = CodepointSet::of(v, v);
        break;
      }
      case 'b':
        if (in_class) {
          s = CodepointSet::of('\b', '\b');
          break;
        }
        error(at, "word boundaries (\\b) are not supported");
      case 'B':
        error(at, "word boundaries (\\B) are not supported");
      case 'A':
      case 'Z':
      case 'z':
      case 'G':
        error(at, fmt::format("the anchor \\{} is not supported (use ^ and $)", c));
      case 'k':
        error(at, "backreferences are not supported");
      case 'p':
      case 'P':
        error(at, "Unicode property classes (\\p{...}) are not supported");
      case 'c':
        error(at, "control escapes (\\c) are not supported");
      default:
        if (c >= '1' && c <= '9') error(at, "backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) error(at, fmt::format("unknown escape \\{}", c));
        --pos_;
        {
          const uint32_t cp = next_codepoint();
          s = CodepointSet::of(cp, cp);
        }
        break;
    }
    if (in_class) {
      narrow->add(s);
      if (wide) wide->add(shorthand ? w : s);
      return -1;
    }
    return chars(s);
  }

  CodepointSet parse_class() {
    const size_t at = pos_;
    ++pos_;  // '['
    bool negate = false;
    if (more() && peek() == '^') {
      negate = true;
      ++pos_;
    }
    if (more() && peek() == ']') error(pos_, "']' first in a class means different things in Python and JavaScript; escape it");
    // A positive class takes what every dialect puts in it; a negated one leaves out what any does.
    CodepointSet narrow, wide;
    // One class item: a character (returned) or a shorthand class (added to the sets, returns -1).
    auto item = [&]() -> int64_t {
      if (peek() == '\\') {
        CodepointSet n, w;
        parse_escape(true, &n, &w);
        if (n.ranges().size() == 1 && n.ranges()[0].lo == n.ranges()[0].hi && w.ranges().size() == 1 &&
            w.ranges()[0].lo == w.ranges()[0].hi)
          return n.ranges()[0].lo;
        narrow.add(n);
        wide.add(w);
        return -1;
      }
      return next_codepoint();
    };
    while (more() && peek() != ']') {
      const int64_t lo = item();
      if (lo < 0) continue;
      if (pos_ + 1 < p_.size() && peek() == '-' && p_[pos_ + 1] != ']') {
        const size_t dash = pos_++;
        const int64_t hi = item();
        if (hi < 0) error(dash, "a range cannot end in a class shorthand");
        if (hi < lo) error(dash, "range out of order in character class");
        narrow.add(uint32_t(lo), uint32_t(hi));
        wide.add(uint32_t(lo), uint32_t(hi));
      } else {
        narrow.add(uint32_t(lo));
        wide.add(uint32_t(lo));
      }
    }
    if (!more()) error(at, "unterminated character class");
    ++pos_;
    return negate ? wide.complement() : narrow;
  }

  Grammar& g_;
  std::string_view p_;
  RegexOptions o_;
  size_t pos_ = 0;
};

}  // namespace

ExprId char_class_expr(Grammar& g, const CodepointSet& set, bool json_string) {
  if (!json_string) return g.chars(set);
  // JSON string content: `"`, `\` and U+0000..U+001F must be escaped.
  CodepointSet special = CodepointSet::of(0, 0x1F);
  special.add('"');
  special.add('\\');
  std::vector<ExprId> alts;
  const CodepointSet plain = set.intersect(special.complement());
  if (!plain.empty()) alts.push_back(g.chars(plain));
  const CodepointSet escaped = set.intersect(special);
  for (const auto& r : escaped.ranges()) {
    for (uint32_t c = r.lo; c <= r.hi; ++c) {
      std::string esc;
      switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: esc = fmt::format("\\u{:04x}", c); break;
      }
      alts.push_back(g.literal(esc));
    }
  }
  return alts.empty() ? g.nothing() : g.alt(std::move(alts));
}

ExprId compile_regex(Grammar& g, std::string_view pattern, const RegexOptions& opt) {
  return RegexParser(g, pattern, opt).run();
}

Grammar regex_grammar(std::string_view pattern) {
  Grammar g;
  const int32_t root = g.add_rule("root");
  g.set_body(root, compile_regex(g, pattern, RegexOptions{}));
  g.set_root(root);
  return g;
}

}  // namespace dpserve::constrain
