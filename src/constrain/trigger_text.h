// Free text watched for strings (an Aho-Corasick automaton over characters, as grammar rules): the
// first trigger, exclude or end string the text completes decides what follows. Structural tags'
// any_text and triggered_tags, and tool calls a model may open in its text, are built on it.
#pragma once

#include <string>
#include <vector>

#include "constrain/grammar.h"

namespace dpserve::constrain {

struct TextPattern {
  std::string text;
  ExprId then;       // what follows once the text completes it; < 0: it may not occur
  const char* role;  // "trigger", "exclude", "end": named in errors
};

// Gives rule `start` (declared by the caller, so a `then` may loop back to it) the body: any text
// up to a pattern, then that pattern's `then`; the text may also stop anywhere when `may_stop`.
// The same string twice: an end or a trigger wins over an exclude. Throws dpserve::Error, prefixed
// with `at`, when a pattern is empty, contains another, or the patterns pass 4096 bytes in all.
void scan_text(Grammar& g, int32_t start, std::vector<TextPattern> pats, bool may_stop, const std::string& at);

}  // namespace dpserve::constrain
