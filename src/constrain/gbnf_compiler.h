// GBNF grammars (llama.cpp's EBNF dialect, also what SGLang's `ebnf` takes) -> Grammar: rules
// `name ::= alternatives` with "literals", [classes], `.`, groups, * + ? {m,n}, # comments; the
// start rule is `root`. Newlines are plain whitespace: a rule ends where the next `name ::=` begins.
#pragma once

#include <string_view>

#include "constrain/grammar.h"

namespace dpserve::constrain {

// Throws dpserve::Error with the line and column of a syntax error, or naming an undefined rule.
Grammar gbnf_grammar(std::string_view text);

}  // namespace dpserve::constrain
