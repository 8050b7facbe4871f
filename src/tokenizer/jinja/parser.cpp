#include "core/check.h"
#include "tokenizer/jinja/ast.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <utility>

#include "tokenizer/utf8.h"

namespace dpserve::jinja {
namespace {

// ---- template-level lexing: text and tags, with whitespace control applied ----

struct Tag {
  enum class Kind { kText, kVar, kBlock } kind;
  std::string content;  // text, or the inside of the tag
  int line;
};

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int count_lines(const std::string& s, size_t end) {
  int n = 1;
  for (size_t i = 0; i < end && i < s.size(); ++i) n += s[i] == '\n';
  return n;
}

std::vector<Tag> split_tags(std::string src) {
  // keep_trailing_newline=False: Jinja drops a single trailing newline of the source.
  if (!src.empty() && src.back() == '\n') {
    src.pop_back();
    if (!src.empty() && src.back() == '\r') src.pop_back();
  }
  std::vector<Tag> out;
  size_t pos = 0;
  bool trim_next = false;       // trim_blocks after the previous block tag
  bool strip_next = false;      // "-%}" on the previous tag
  bool in_raw = false;          // inside {% raw %}: only {% endraw %} ends the text
  // The words of a block tag's inside, as "{%- endraw %}" -> "endraw".
  auto tag_word = [&](size_t open) {
    size_t k = open + 2;
    if (k < src.size() && (src[k] == '-' || src[k] == '+')) ++k;
    while (k < src.size() && is_ws(src[k])) ++k;
    size_t e = k;
    while (e < src.size() && std::isalpha(static_cast<unsigned char>(src[e]))) ++e;
    size_t after = e;
    while (after < src.size() && is_ws(src[after])) ++after;
    if (after < src.size() && (src[after] == '-' || src[after] == '+')) ++after;
    return src.compare(after, 2, "%}") == 0 ? src.substr(k, e - k) : std::string();
  };
  while (pos <= src.size()) {
    size_t open = std::string::npos;
    for (size_t k = src.find('{', pos); k != std::string::npos && k + 1 < src.size(); k = src.find('{', k + 1)) {
      const char n = src[k + 1];
      if (in_raw ? n == '%' && tag_word(k) == "endraw" : (n == '{' || n == '%' || n == '#')) {
        open = k;
        break;
      }
    }
    if (in_raw && open == std::string::npos) fail("chat template: missing '{{% endraw %}}' before the end of the template");
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (strip_next) {
      size_t b = 0;
      while (b < text.size() && is_ws(text[b])) ++b;
      text.erase(0, b);
    } else if (trim_next) {
      if (text.size() >= 1 && text[0] == '\n') {
        text.erase(0, 1);
      } else if (text.size() >= 2 && text[0] == '\r' && text[1] == '\n') {
        text.erase(0, 2);
      }
    }
    if (open == std::string::npos) {
      if (!text.empty()) out.push_back({Tag::Kind::kText, text, 0});
      break;
    }
    const char kind = src[open + 1];
    const int line = count_lines(src, open);
    size_t inner = open + 2;
    const char lmark = inner < src.size() ? src[inner] : 0;
    if (lmark == '-' || lmark == '+') ++inner;
    if (lmark == '-') {
      size_t e = text.size();
      while (e > 0 && is_ws(text[e - 1])) --e;
      text.resize(e);
    } else if (lmark != '+' && kind != '{') {
      // lstrip_blocks: blanks from the start of a source line up to a block or comment tag.
      size_t k = open;
      while (k > pos && is_blank(src[k - 1])) --k;
      if (k == 0 || src[k - 1] == '\n') text.resize(text.size() - std::min(text.size(), open - k));
    }
    if (!text.empty()) out.push_back({Tag::Kind::kText, text, line});
    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t end = src.find(close, inner);
    if (kind != '#') {
      // A closing marker inside a string literal must not end the tag.
      size_t k = inner;
      char quote = 0;
      for (; k + 1 < src.size(); ++k) {
        const char c = src[k];
        if (quote) {
          if (c == '\\') {
            ++k;
          } else if (c == quote) {
            quote = 0;
          }
        } else if (c == '\'' || c == '"') {
          quote = c;
        } else if (src.compare(k, 2, close) == 0) {
          break;
        }
      }
      end = k + 1 < src.size() ? k : std::string::npos;
    }
    if (end == std::string::npos) fail("chat template line {}: unclosed '{{{}' tag", line, kind);
    size_t content_end = end;
    const char rmark = end > inner ? src[end - 1] : 0;
    if (rmark == '-' || rmark == '+') --content_end;
    strip_next = rmark == '-';
    trim_next = rmark != '+' && kind != '{';
    // {% raw %} ... {% endraw %}: the text between is output as it is, with the whitespace control of the
    // two tags applied to it like any other text's.
    const bool raw_tag = kind == '%' && (in_raw || tag_word(open) == "raw");
    if (raw_tag) {
      in_raw = !in_raw;
      if (in_raw) trim_next = false;  // Jinja2's lexer keeps the newline after "{% raw %}" (trim_blocks aside)
    } else if (kind != '#') {
      out.push_back({kind == '{' ? Tag::Kind::kVar : Tag::Kind::kBlock, src.substr(inner, content_end - inner), line});
    }
    pos = end + 2;
  }
  return out;
}

// ---- expression lexing ----

struct Tok {
  enum class Kind { kName, kString, kInt, kFloat, kOp, kEnd } kind;
  std::string text;
};

std::vector<Tok> lex_expr(const std::string& s, int line) {
  std::vector<Tok> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (is_ws(c)) {
      ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::Kind::kName, s.substr(i, j - i)});
      i = j;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) {
          is_float = true;
          j = k;
          while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        }
      }
      std::string num;
      for (size_t k = i; k < j; ++k) {
        if (s[k] != '_') num += s[k];
      }
      out.push_back({is_float ? Tok::Kind::kFloat : Tok::Kind::kInt, num});
      i = j;
      continue;
    }
    if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          v += s[j];
          continue;
        }
        const char e = s[++j];
        switch (e) {
          case 'n': v += '\n'; break;
          case 't': v += '\t'; break;
          case 'r': v += '\r'; break;
          case '\\': v += '\\'; break;
          case '\'': v += '\''; break;
          case '"': v += '"'; break;
          case '0': v += '\0'; break;
          case 'a': v += '\a'; break;
          case 'b': v += '\b'; break;
          case 'f': v += '\f'; break;
          case 'v': v += '\v'; break;
          case '\n': break;
          case 'x':
          case 'u':
          case 'U': {
            const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (j + n >= s.size()) fail("chat template line {}: bad \\{} escape", line, e);
            const uint32_t cp = static_cast<uint32_t>(std::strtoul(s.substr(j + 1, n).c_str(), nullptr, 16));
            utf8::append_codepoint(v, cp);
            j += n;
            break;
          }
          default: v += '\\'; v += e;
        }
      }
      if (j >= s.size()) fail("chat template line {}: unterminated string literal", line);
      out.push_back({Tok::Kind::kString, v});
      i = j + 1;
      continue;
    }
    static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
    bool matched = false;
    for (const char* t : two) {
      if (s.compare(i, 2, t) == 0) {
        out.push_back({Tok::Kind::kOp, t});
        i += 2;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (std::string_view("+-*/%~<>()[]{},.:|=").find(c) != std::string_view::npos) {
      out.push_back({Tok::Kind::kOp, std::string(1, c)});
      ++i;
      continue;
    }
    fail("chat template line {}: unexpected character '{}' in expression", line, c);
  }
  out.push_back({Tok::Kind::kEnd, ""});
  return out;
}

// ---- parsing ----

class Parser {
 public:
  explicit Parser(std::vector<Tag> tags) : tags_(std::move(tags)) {}

  Body parse_all() {
    Body body;
    std::string end = parse_body(body, {});
    if (!end.empty()) fail("chat template line {}: unexpected '{{% {} %}}'", line_, end);
    return body;
  }

 private:
  // Parses statements until a block tag whose first word is in `stops`; returns that word ("" at EOF).
  std::string parse_body(Body& body, const std::vector<std::string>& stops) {
    while (ti_ < tags_.size()) {
      const Tag& t = tags_[ti_++];
      line_ = t.line;
      if (t.kind == Tag::Kind::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->text = t.content;
        body.push_back(std::move(s));
        continue;
      }
      start(t.content);
      if (t.kind == Tag::Kind::kVar) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = line_;
        s->expr = parse_expr();
        expect_end();
        body.push_back(std::move(s));
        continue;
      }
      if (peek().kind != Tok::Kind::kName) fail("chat template line {}: empty or malformed block tag", line_);
      const std::string word = peek().text;
      for (const auto& st : stops) {
        if (word == st) {
          ++ki_;
          return word;
        }
      }
      ++ki_;
      body.push_back(parse_statement(word));
    }
    if (!stops.empty()) fail("chat template: missing '{{% {} %}}' before the end of the template", stops.back());
    return "";
  }

  StmtPtr parse_statement(const std::string& word) {
    if (++block_depth_ > 200) fail("chat template line {}: blocks nested too deeply", line_);
    struct Exit {
      int& d;
      ~Exit() { --d; }
    } exit_guard{block_depth_};
    auto s = std::make_unique<Stmt>();
    s->line = line_;
    if (word == "if") {
      s->kind = Stmt::Kind::kIf;
      ExprPtr cond = parse_expr();
      expect_end();
      for (;;) {
        Body b;
        const std::string end = parse_body(b, {"elif", "else", "endif"});
        s->branches.emplace_back(std::move(cond), std::move(b));
        if (end == "elif") {
          cond = parse_expr();
          expect_end();
          continue;
        }
        if (end == "else") {
          expect_end();
          if (parse_body(s->else_body, {"endif"}) != "endif") fail("chat template line {}: missing endif", s->line);
        }
        expect_end();
        break;
      }
    } else if (word == "for") {
      s->kind = Stmt::Kind::kFor;
      s->targets.push_back(expect_name());
      while (accept(",")) s->targets.push_back(expect_name());
      if (!(peek().kind == Tok::Kind::kName && peek().text == "in")) fail("chat template line {}: expected 'in' in for", line_);
      ++ki_;
      s->expr = parse_ternary(false);
      if (peek().kind == Tok::Kind::kName && peek().text == "if") {
        ++ki_;
        s->filter = parse_or();
      }
      if (peek().kind == Tok::Kind::kName && peek().text == "recursive") fail("chat template line {}: recursive for loops are not supported", line_);
      expect_end();
      ++loop_depth_;
      const std::string end = parse_body(s->body, {"else", "endfor"});
      --loop_depth_;
      if (end == "else") {
        expect_end();
        parse_body(s->else_body, {"endfor"});
      }
      expect_end();
    } else if (word == "set") {
      std::string name = expect_name();
      if (accept(".")) {
        s->attr = expect_name();
      }
      s->targets.push_back(name);
      while (accept(",")) s->targets.push_back(expect_name());
      s->text = name;
      if (accept("=")) {
        s->kind = Stmt::Kind::kSet;
        s->expr = parse_tuple_or_expr();
        expect_end();
      } else {
        s->kind = Stmt::Kind::kSetBlock;
        if (peek().kind == Tok::Kind::kOp && peek().text == "|") fail("chat template line {}: filtered set blocks are not supported", line_);
        expect_end();
        parse_body(s->body, {"endset"});
        expect_end();
      }
    } else if (word == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->text = expect_name();
      expect("(");
      if (!accept(")")) {
        for (;;) {
          s->targets.push_back(expect_name());
          s->defaults.push_back(accept("=") ? parse_expr() : nullptr);
          if (accept(")")) break;
          expect(",");
        }
      }
      expect_end();
      const int outer_loops = std::exchange(loop_depth_, 0);  // a macro body is a function of its own
      parse_body(s->body, {"endmacro"});
      loop_depth_ = outer_loops;
      expect_end();
    } else if (word == "break" || word == "continue") {
      // Jinja2 compiles loops to Python loops, where a stray break is a SyntaxError; here it would end
      // the enclosing block silently and drop the rest of the prompt.
      if (loop_depth_ == 0) fail("chat template line {}: '{}' outside loop", line_, word);
      s->kind = word == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      expect_end();
    } else {
      fail("chat template line {}: unsupported tag '{{% {} %}}'", line_, word);
    }
    return s;
  }

  // expression token stream helpers
  void start(const std::string& content) {
    toks_ = lex_expr(content, line_);
    ki_ = 0;
  }
  const Tok& peek(size_t k = 0) const { return toks_[std::min(ki_ + k, toks_.size() - 1)]; }
  bool accept(const char* op) {
    if (peek().kind == Tok::Kind::kOp && peek().text == op) {
      ++ki_;
      return true;
    }
    return false;
  }
  void expect(const char* op) {
    if (!accept(op)) fail("chat template line {}: expected '{}' but found '{}'", line_, op, peek().text);
  }
  void expect_end() {
    if (peek().kind != Tok::Kind::kEnd) fail("chat template line {}: unexpected '{}' at the end of a tag", line_, peek().text);
  }
  std::string expect_name() {
    if (peek().kind != Tok::Kind::kName) fail("chat template line {}: expected a name but found '{}'", line_, peek().text);
    return toks_[ki_++].text;
  }
  bool at_name(const char* n) const { return peek().kind == Tok::Kind::kName && peek().text == n; }

  ExprPtr node(Expr::Kind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line_;
    return e;
  }

  ExprPtr parse_tuple_or_expr() {
    ExprPtr first = parse_expr();
    if (!(peek().kind == Tok::Kind::kOp && peek().text == ",")) return first;
    auto t = node(Expr::Kind::kTuple);
    t->args.push_back(std::move(first));
    while (accept(",")) {
      if (peek().kind == Tok::Kind::kEnd) break;
      t->args.push_back(parse_expr());
    }
    return t;
  }

  ExprPtr parse_expr() { return parse_ternary(true); }

  ExprPtr parse_ternary(bool allow) {
    ExprPtr e = parse_or();
    while (allow && at_name("if")) {
      ++ki_;
      auto t = node(Expr::Kind::kTernary);
      t->c = parse_or();
      t->a = std::move(e);
      if (at_name("else")) {
        ++ki_;
        t->b = parse_ternary(true);
      }
      e = std::move(t);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (at_name("or")) {
      ++ki_;
      auto n = node(Expr::Kind::kOr);
      n->a = std::move(e);
      n->b = parse_and();
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (at_name("and")) {
      ++ki_;
      auto n = node(Expr::Kind::kAnd);
      n->a = std::move(e);
      n->b = parse_not();
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      ++ki_;
      auto n = node(Expr::Kind::kNot);
      n->a = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    ExprPtr cmp;
    for (;;) {
      std::string op;
      const Tok& t = peek();
      if (t.kind == Tok::Kind::kOp && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == ">" ||
                                        t.text == "<=" || t.text == ">=")) {
        op = t.text;
        ++ki_;
      } else if (at_name("in")) {
        op = "in";
        ++ki_;
      } else if (at_name("not") && peek(1).kind == Tok::Kind::kName && peek(1).text == "in") {
        op = "not in";
        ki_ += 2;
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(Expr::Kind::kCompare);
        cmp->a = std::move(e);
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(e);
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    auto n = node(Expr::Kind::kBinary);
    n->name = op;
    n->a = std::move(l);
    n->b = std::move(r);
    return n;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (peek().kind == Tok::Kind::kOp && (peek().text == "+" || peek().text == "-")) {
      const std::string op = toks_[ki_++].text;
      e = binary(op, std::move(e), parse_concat());
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (accept("~")) e = binary("~", std::move(e), parse_math2());
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (peek().kind == Tok::Kind::kOp &&
           (peek().text == "*" || peek().text == "/" || peek().text == "//" || peek().text == "%")) {
      const std::string op = toks_[ki_++].text;
      e = binary(op, std::move(e), parse_pow());
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (accept("**")) e = binary("**", std::move(e), parse_unary(true));
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    struct Guard {
      int& d;
      Guard(int& x, int line) : d(x) {
        if (++d > 200) fail("chat template line {}: expression nested too deeply", line);
      }
      ~Guard() { --d; }
    } guard(nesting_, line_);
    ExprPtr e;
    if (accept("-")) {
      e = node(Expr::Kind::kNeg);
      e->a = parse_unary(false);
    } else if (accept("+")) {
      e = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Tok t = peek();
    ++ki_;
    switch (t.kind) {
      case Tok::Kind::kString: {
        auto e = node(Expr::Kind::kLiteral);
        std::string s = t.text;
        while (peek().kind == Tok::Kind::kString) s += toks_[ki_++].text;  // adjacent literals join
        e->value = Value::string(s);
        return e;
      }
      case Tok::Kind::kInt: {
        auto e = node(Expr::Kind::kLiteral);
        e->value = Value::integer(std::strtoll(t.text.c_str(), nullptr, 10));
        return e;
      }
      case Tok::Kind::kFloat: {
        auto e = node(Expr::Kind::kLiteral);
        e->value = Value::number(std::strtod(t.text.c_str(), nullptr));
        return e;
      }
      case Tok::Kind::kName: {
        auto e = node(Expr::Kind::kLiteral);
        if (t.text == "true" || t.text == "True") {
          e->value = Value::boolean(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value::boolean(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case Tok::Kind::kOp:
        if (t.text == "(") {
          if (accept(")")) return node(Expr::Kind::kTuple);
          ExprPtr first = parse_expr();
          if (accept(")")) return first;
          auto tup = node(Expr::Kind::kTuple);
          tup->args.push_back(std::move(first));
          while (accept(",")) {
            if (peek().kind == Tok::Kind::kOp && peek().text == ")") break;
            tup->args.push_back(parse_expr());
          }
          expect(")");
          return tup;
        }
        if (t.text == "[") {
          auto l = node(Expr::Kind::kList);
          while (!accept("]")) {
            l->args.push_back(parse_expr());
            if (!accept(",")) {
              expect("]");
              break;
            }
          }
          return l;
        }
        if (t.text == "{") {
          auto d = node(Expr::Kind::kDict);
          while (!accept("}")) {
            d->args.push_back(parse_expr());
            expect(":");
            d->args.push_back(parse_expr());
            if (!accept(",")) {
              expect("}");
              break;
            }
          }
          return d;
        }
        break;
      case Tok::Kind::kEnd: fail("chat template line {}: expression ends unexpectedly", line_);
    }
    fail("chat template line {}: unexpected '{}' in expression", line_, t.text);
  }

  void parse_call_args(Expr& e) {
    // after "("
    while (!accept(")")) {
      if (peek().kind == Tok::Kind::kName && peek(1).kind == Tok::Kind::kOp && peek(1).text == "=") {
        std::string k = toks_[ki_].text;
        ki_ += 2;
        e.kwargs.emplace_back(k, parse_expr());
      } else {
        if (peek().kind == Tok::Kind::kOp && (peek().text == "*" || peek().text == "**")) {
          fail("chat template line {}: *args / **kwargs in calls are not supported", line_);
        }
        e.args.push_back(parse_expr());
      }
      if (!accept(",")) {
        expect(")");
        break;
      }
    }
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      if (accept(".")) {
        auto n = node(Expr::Kind::kAttr);
        if (peek().kind == Tok::Kind::kInt) {
          n->kind = Expr::Kind::kItem;
          auto idx = node(Expr::Kind::kLiteral);
          idx->value = Value::integer(std::strtoll(toks_[ki_++].text.c_str(), nullptr, 10));
          n->b = std::move(idx);
        } else {
          n->name = expect_name();
        }
        n->a = std::move(e);
        e = std::move(n);
      } else if (accept("[")) {
        ExprPtr parts[3];
        int n_parts = 0;
        bool is_slice = false;
        for (;;) {
          if (peek().kind == Tok::Kind::kOp && (peek().text == ":" || peek().text == "]")) {
            // empty part
          } else {
            parts[n_parts] = parse_expr();
          }
          if (accept(":")) {
            is_slice = true;
            if (++n_parts > 2) fail("chat template line {}: bad slice", line_);
            continue;
          }
          expect("]");
          break;
        }
        if (is_slice) {
          auto s = node(Expr::Kind::kSlice);
          s->a = std::move(e);
          for (auto& p : parts) s->args.push_back(std::move(p));
          e = std::move(s);
        } else {
          // x[] has no index: the interpreter would dereference a null expression.
          if (!parts[0]) fail("chat template line {}: empty subscript []", line_);
          auto s = node(Expr::Kind::kItem);
          s->a = std::move(e);
          s->b = std::move(parts[0]);
          e = std::move(s);
        }
      } else if (accept("(")) {
        auto c = node(Expr::Kind::kCall);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filters(ExprPtr e) {
    for (;;) {
      if (accept("|")) {
        auto f = node(Expr::Kind::kFilter);
        f->name = expect_name();
        while (accept(".")) f->name += "." + expect_name();
        if (accept("(")) parse_call_args(*f);
        f->a = std::move(e);
        e = std::move(f);
      } else if (peek().kind == Tok::Kind::kOp && peek().text == "(") {
        // As Jinja2's parse_filter_expr: after a filter or test only a call may follow, not a subscript
        // or attribute ("x | first[0]" is a syntax error there, and must not render here).
        ++ki_;
        auto c = node(Expr::Kind::kCall);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else if (at_name("is")) {
        ++ki_;
        auto t = node(Expr::Kind::kTest);
        if (at_name("not")) {
          ++ki_;
          t->negated = true;
        }
        t->name = expect_name();
        if (accept("(")) {
          parse_call_args(*t);
        } else if (peek().kind == Tok::Kind::kString || peek().kind == Tok::Kind::kInt ||
                   peek().kind == Tok::Kind::kFloat ||
                   // A list or dict literal argument without parentheses: "role is in ['user', 'tool']".
                   (peek().kind == Tok::Kind::kOp && (peek().text == "[" || peek().text == "{")) ||
                   (peek().kind == Tok::Kind::kName && peek().text != "else" && peek().text != "or" &&
                    peek().text != "and" && peek().text != "if" && peek().text != "in" && peek().text != "not" &&
                    peek().text != "is")) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        t->a = std::move(e);
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  std::vector<Tag> tags_;
  size_t ti_ = 0;
  std::vector<Tok> toks_;
  size_t ki_ = 0;
  int line_ = 0;
  int nesting_ = 0;
  int block_depth_ = 0;
  int loop_depth_ = 0;  // for bodies being parsed, within the current macro
};

}  // namespace

Body parse_template(const std::string& source) { return Parser(split_tags(source)).parse_all(); }

}  // namespace dpserve::jinja
