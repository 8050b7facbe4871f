// What a model may write before its constrained output: the rest of a reasoning block its chat
// template opened (`<think>` at the end of the prompt, as QwQ, DeepSeek-R1 and Qwen3-Thinking
// templates do), or gpt-oss's messages before its final one, so that a response_format / regex /
// grammar constrains the answer, not the thinking.
#pragma once

#include <cstdint>
#include <string_view>

#include "constrain/grammar.h"

namespace dpserve::constrain {

enum class ReasoningPrefix : uint8_t {
  kNone,       // the constraint holds from the first token
  kOpenThink,  // any text, `</think>`, up to two newlines, then the constrained output
  kHarmony,    // gpt-oss: analysis messages and preambles, the final message's header, then the output
};

// Any text (whole UTF-8 characters) not containing `stop`, then `stop`: a KMP automaton as
// right-recursive rules (tail calls, so it runs in constant stack). `stop` must be ASCII.
ExprId text_until(Grammar& g, std::string_view stop);

// The reasoning that continues an opened <think> block: text_until("</think>") and 0-2 newlines.
ExprId open_think_rest(Grammar& g);

// Puts `prefix` before everything `g` accepts (a new root rule).
void add_reasoning_prefix(Grammar& g, ReasoningPrefix prefix);

}  // namespace dpserve::constrain
