// The grammar IR every constraint compiles to (JSON Schema, regular expressions, GBNF): named rules
// whose bodies are regular expressions over byte sets and references to rules, i.e. an extended
// context-free grammar over bytes. Automaton::build turns it into a pushdown automaton.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "constrain/byte_set.h"
#include "constrain/codepoint_set.h"
#include "constrain/special_token.h"

namespace dpserve::constrain {

using ExprId = int32_t;

enum class ExprKind : uint8_t {
  kBytes,   // one byte out of `bytes`
  kSeq,     // the kids in order; no kids: the empty string
  kAlt,     // one of the kids; no kids: no string at all
  kRepeat,  // the kid, min..max times (max < 0: unbounded)
  kRef,     // the rule `rule`
};

struct Expr {
  ExprKind kind = ExprKind::kSeq;
  ByteSet bytes;
  std::vector<ExprId> kids;
  int32_t min = 0, max = 0;
  int32_t rule = -1;
};

class Grammar {
 public:
  // Repetition bounds above this are refused (each repetition is unrolled into the automaton).
  static constexpr int32_t kMaxRepeat = 4096;

  ExprId empty();    // matches ""
  ExprId nothing();  // matches no string
  ExprId bytes(const ByteSet& s);
  ExprId literal(std::string_view text);
  ExprId seq(std::vector<ExprId> kids);
  ExprId alt(std::vector<ExprId> kids);
  // Throws dpserve::Error when max exceeds kMaxRepeat or min > max.
  ExprId repeat(ExprId e, int32_t min, int32_t max);
  ExprId optional(ExprId e) { return repeat(e, 0, 1); }
  ExprId star(ExprId e) { return repeat(e, 0, -1); }
  ExprId plus(ExprId e) { return repeat(e, 1, -1); }
  ExprId ref(int32_t rule);
  // Any one character of `set`, as its UTF-8 bytes.
  ExprId chars(const CodepointSet& set);
  // The special token spelled `text` (special_token.h): that token only, never text that reads the same.
  ExprId special_token(std::string_view text) { return literal(special_token_spelling(text)); }

  // Rules are declared first (so they can reference each other), given bodies later.
  int32_t add_rule(std::string name);
  int32_t find_rule(std::string_view name) const;  // -1 when absent
  void set_body(int32_t rule, ExprId body);
  void set_root(int32_t rule) { root_ = rule; }

  int32_t root() const { return root_; }
  size_t num_rules() const { return rules_.size(); }
  const std::string& rule_name(int32_t r) const { return rules_[size_t(r)].name; }
  ExprId rule_body(int32_t r) const { return rules_[size_t(r)].body; }
  const Expr& expr(ExprId e) const { return exprs_[size_t(e)]; }
  size_t num_exprs() const { return exprs_.size(); }

  // GBNF-like text of the grammar (tests and debugging).
  std::string to_string() const;
  std::string to_string(ExprId e) const;

 private:
  struct Rule {
    std::string name;
    ExprId body = -1;
  };
  ExprId add(Expr e);
  std::vector<Expr> exprs_;
  std::vector<Rule> rules_;
  // Name -> rule: compilers that declare a rule per automaton state (intersect_regular) add
  // thousands, and a scan per add_rule made that quadratic.
  std::map<std::string, int32_t, std::less<>> rule_index_;
  int32_t root_ = -1;
};

}  // namespace dpserve::constrain
