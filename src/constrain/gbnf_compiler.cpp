#include "constrain/gbnf_compiler.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

constexpr int kMaxGrammarNesting = 200;

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

class GbnfParser {
 public:
  GbnfParser(std::string_view t, std::vector<std::string>* tokens) : t_(t), tokens_(tokens) {}

  Grammar run() {
    skip_space();
    while (more()) {
      parse_rule();
      skip_space();
    }
    const int32_t root = g_.find_rule("root");
    if (root < 0 || !defined(root)) fail("grammar: no rule named 'root' (the start rule)");
    for (size_t r = 0; r < g_.num_rules(); ++r)
      if (!defined(int32_t(r))) fail("grammar: rule '{}' is used but never defined", g_.rule_name(int32_t(r)));
    g_.set_root(root);
    return std::move(g_);
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail("grammar: {} at line {} column {}", what, line, col);
  }

  bool more() const { return pos_ < t_.size(); }
  char peek() const { return t_[pos_]; }
  bool defined(int32_t r) const { return g_.rule_body(r) >= 0; }

  void skip_space() {
    while (more()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (more() && peek() != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const size_t b = pos_;
    while (more() && name_char(peek())) ++pos_;
    if (pos_ == b) error(b, "expected a rule name");
    return std::string(t_.substr(b, pos_ - b));
  }

  int32_t rule_id(const std::string& name) {
    int32_t r = g_.find_rule(name);
    return r >= 0 ? r : g_.add_rule(name);
  }

  // Is a `name ::=` ahead (the start of the next rule)?
  bool rule_start_ahead() const {
    size_t i = pos_;
    while (i < t_.size() && name_char(t_[i])) ++i;
    if (i == pos_) return false;
    while (i < t_.size() && (t_[i] == ' ' || t_[i] == '\t' || t_[i] == '\n' || t_[i] == '\r')) ++i;
    return t_.substr(i, 3) == "::=";
  }

  void parse_rule() {
    const size_t at = pos_;
    const std::string name = parse_name();
    skip_space();
    if (t_.substr(pos_, 3) != "::=") error(pos_, fmt::format("expected '::=' after '{}'", name));
    pos_ += 3;
    const int32_t r = rule_id(name);
    if (defined(r)) error(at, fmt::format("rule '{}' is defined twice", name));
    g_.set_body(r, parse_alternatives(0));
  }

  ExprId parse_alternatives(int depth) {
    if (depth > kMaxGrammarNesting) error(pos_, "groups nest too deeply");
    std::vector<ExprId> alts;
    for (;;) {
      alts.push_back(parse_sequence(depth));
      skip_space();
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
    for (;;) {
      skip_space();
      if (!more()) break;
      const char c = peek();
      if (c == '|' || c == ')') break;
      if (depth == 0 && rule_start_ahead()) break;
      ExprId e = parse_primary(depth);
      e = parse_postfix(e);
      items.push_back(e);
    }
    return g_.seq(std::move(items));
  }

  ExprId parse_postfix(ExprId e) {
    for (;;) {
      if (!more()) return e;
      const size_t at = pos_;
      const char c = peek();
      int32_t lo, hi;
      if (c == '*') {
        lo = 0, hi = -1;
        ++pos_;
      } else if (c == '+') {
        lo = 1, hi = -1;
        ++pos_;
      } else if (c == '?') {
        lo = 0, hi = 1;
        ++pos_;
      } else if (c == '{') {
        ++pos_;
        skip_space();
        auto num = [&](int32_t& v) {
          const size_t b = pos_;
          int64_t x = 0;
          while (more() && peek() >= '0' && peek() <= '9') x = std::min<int64_t>(x * 10 + (t_[pos_++] - '0'), INT32_MAX);
          v = int32_t(x);
          return pos_ > b;
        };
        int32_t a = 0, b = -1;
        const bool has_a = num(a);
        skip_space();
        if (more() && peek() == ',') {
          ++pos_;
          skip_space();
          if (!num(b)) b = -1;
          skip_space();
        } else {
          if (!has_a) error(at, "expected a repetition count");
          b = a;
        }
        if (!more() || peek() != '}') error(at, "expected '}' closing the repetition");
        ++pos_;
        lo = has_a ? a : 0;
        hi = b;
      } else {
        return e;
      }
      try {
        e = g_.repeat(e, lo, hi);
      } catch (const Error& err) {
        error(at, err.what());
      }
    }
  }

  uint32_t parse_char(size_t at) {
    if (!more()) error(at, "unexpected end of grammar");
    if (peek() == '\\') {
      ++pos_;
      if (!more()) error(at, "trailing backslash");
      const char c = t_[pos_++];
      auto hex = [&](int n) {
        uint32_t v = 0;
        for (int k = 0; k < n; ++k) {
          if (!more() || !std::isxdigit(uint8_t(peek()))) error(at, "bad hex escape");
          const char h = t_[pos_++];
          v = v * 16 + uint32_t(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        return v;
      };
      switch (c) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '0': return 0;
        case 'x': return hex(2);
        case 'u': return hex(4);
        case 'U': return hex(8);
        case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': case '/':
          return uint8_t(c);
        default:
          error(pos_ - 2, fmt::format("unknown escape '\\{}'", c));
      }
    }
    const auto c0 = uint8_t(t_[pos_]);
    const int n = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : (c0 >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + size_t(n) > t_.size()) error(pos_, "invalid UTF-8");
    uint32_t cp = n == 1 ? c0 : n == 2 ? (c0 & 0x1F) : n == 3 ? (c0 & 0x0F) : (c0 & 0x07);
    for (int i = 1; i < n; ++i) {
      const auto c = uint8_t(t_[pos_ + size_t(i)]);
      if ((c & 0xC0) != 0x80) error(pos_, "invalid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    pos_ += size_t(n);
    return cp;
  }

  ExprId codepoint(uint32_t cp, size_t at) {
    if (cp > CodepointSet::kMax || (cp >= 0xD800 && cp <= 0xDFFF)) error(at, "character is not a Unicode scalar value");
    return g_.chars(CodepointSet::of(cp, cp));
  }

  ExprId parse_primary(int depth) {
    const size_t at = pos_;
    const char c = peek();
    if (c == '"' || c == '\'') {
      const char q = c;
      ++pos_;
      std::vector<ExprId> chars;
      while (more() && peek() != q) {
        const size_t ca = pos_;
        chars.push_back(codepoint(parse_char(at), ca));
      }
      if (!more()) error(at, "unterminated string literal");
      ++pos_;
      return g_.seq(std::move(chars));
    }
    if (c == '[') {
      ++pos_;
      bool negate = false;
      if (more() && peek() == '^') {
        negate = true;
        ++pos_;
      }
      CodepointSet set;
      while (more() && peek() != ']') {
        const size_t ca = pos_;
        const uint32_t lo = parse_char(at);
        if (pos_ + 1 < t_.size() && peek() == '-' && t_[pos_ + 1] != ']') {
          ++pos_;
          const uint32_t hi = parse_char(at);
          if (hi < lo) error(ca, "range out of order in character class");
          set.add(lo, hi);
        } else {
          set.add(lo);
        }
      }
      if (!more()) error(at, "unterminated character class");
      ++pos_;
      return g_.chars(negate ? set.complement() : set);
    }
    if (c == '(') {
      ++pos_;
      if (more() && peek() == '=') error(at, "lookahead assertions are not supported");
      ExprId e = parse_alternatives(depth + 1);
      skip_space();
      if (!more() || peek() != ')') error(at, "missing ')'");
      ++pos_;
      return e;
    }
    if (c == '.') {
      ++pos_;
      return g_.chars(CodepointSet::any());
    }
    if (c == '!' && pos_ + 1 < t_.size() && t_[pos_ + 1] == '<')
      error(at, "negated tokens (!<...>) are not supported");
    if (c == '<') {
      if (!tokens_) error(at, "token references (<...>) are not supported here");
      const size_t close = t_.find('>', pos_ + 1);
      if (close == std::string_view::npos) error(at, "unterminated token reference (<...>)");
      const std::string_view name = t_.substr(pos_, close + 1 - pos_);
      if (name.size() < 3 || name.find_first_of(" \t\r\n") != std::string_view::npos)
        error(at, "expected a token's text between '<' and '>' (<|end|>)");
      if (name[1] == '[')
        error(at, "token ids (<[N]>) are not supported: name the token by its text (<|end|>)");
      pos_ = close + 1;
      tokens_->emplace_back(name);
      return g_.special_token(name);
    }
    if (name_char(c)) {
      const std::string name = parse_name();
      return g_.ref(rule_id(name));
    }
    error(at, fmt::format("unexpected '{}'", c));
  }

  std::string_view t_;
  std::vector<std::string>* tokens_;  // the special tokens named; null: naming one is an error
  size_t pos_ = 0;
  Grammar g_;
};

}  // namespace

Grammar gbnf_grammar(std::string_view text) {
  std::vector<std::string> tokens;
  return GbnfParser(text, &tokens).run();
}

Grammar gbnf_grammar_without_tokens(std::string_view text) { return GbnfParser(text, nullptr).run(); }

std::vector<std::string> gbnf_token_names(std::string_view text) {
  std::vector<std::string> tokens;
  GbnfParser(text, &tokens).run();
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  return tokens;
}

}  // namespace dpserve::constrain
