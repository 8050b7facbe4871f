// GBNF grammars (llama.cpp's EBNF dialect, also what SGLang's `ebnf` takes) -> Grammar: rules
// `name ::= alternatives` with "literals", [classes], `.`, groups, * + ? {m,n}, # comments, and
// special tokens by their text (<|end|>, as llama.cpp's grammars name them: that token only, never
// text that reads the same); the start rule is `root`. Newlines are plain whitespace: a rule ends
// where the next `name ::=` begins.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "constrain/grammar.h"

namespace dpserve::constrain {

// Throws dpserve::Error with the line and column of a syntax error, or naming an undefined rule.
Grammar gbnf_grammar(std::string_view text);
// The same with token references refused (grammars nested in structural tags, which nothing checks
// against the tokenizer).
Grammar gbnf_grammar_without_tokens(std::string_view text);
// The special tokens a grammar names, each once: the server checks them against its tokenizer.
std::vector<std::string> gbnf_token_names(std::string_view text);

}  // namespace dpserve::constrain
