// Regular expressions -> grammar expressions over UTF-8 bytes: the subset SGLang / Outlines users
// send and JSON Schema `pattern`s use (literals and escapes, classes, `.`, groups, alternation,
// greedy / lazy / counted quantifiers). Backreferences, lookaround, word boundaries and inline
// flags cannot be expressed by an automaton: they are refused with an error naming them.
//
// Where Python's `re` and JavaScript's RegExp disagree, a construct matches the strings both
// accept (`\d` is [0-9], `\w` [A-Za-z0-9_], `\s` [ \t\n\v\f\r], `.` excludes all line terminators),
// so an output validates under either.
#pragma once

#include <string_view>

#include "constrain/grammar.h"

namespace dpserve::constrain {

struct RegexOptions {
  // JSON Schema semantics: the pattern matches anywhere unless anchored with ^ / $. Otherwise the
  // whole output must match (SGLang's `regex`; ^ and $ at the ends are allowed and mean nothing).
  bool search = false;
  // Emit each character as JSON string content (`"`, `\` and control characters escaped).
  bool json_string = false;
};

// Throws dpserve::Error naming the unsupported construct or the syntax error and its offset.
ExprId compile_regex(Grammar& g, std::string_view pattern, const RegexOptions& opt);

// A grammar whose root matches exactly the strings fully matching `pattern`.
Grammar regex_grammar(std::string_view pattern);

// One character of `set` as grammar bytes; in JSON-string form characters that JSON must escape
// become their escape sequences.
ExprId char_class_expr(Grammar& g, const CodepointSet& set, bool json_string);

}  // namespace dpserve::constrain
