// gpt-oss's harmony format as grammar pieces: the messages a model writes before its answer
// (analysis, commentary preambles), the final message's header, and a message that calls a function.
// Tags are the tokenizer's special tokens (Grammar::special_token), so text can never pass for one.
// Each message starts where the prompt's "<|start|>assistant" (or the previous message's
// "<|end|><|start|>assistant") left off: at its channel, or at a recipient in the role part.
#pragma once

#include <string>
#include <string_view>

#include "constrain/grammar.h"

namespace dpserve::constrain {

// The tags a harmony grammar names; a tokenizer must have each as a special token.
inline constexpr std::string_view kHarmonyTags[] = {"<|start|>", "<|end|>", "<|message|>", "<|channel|>",
                                                    "<|constrain|>"};

// Zero or more analysis messages and commentary preambles, each closed by <|end|><|start|>assistant.
ExprId harmony_side_messages(Grammar& g);

// "<|channel|>final" (optionally " <|constrain|>json") "<|message|>": the answer follows.
ExprId harmony_final_header(Grammar& g);

// A message calling functions.NAME with `args` as its body, in either header form the format has:
//   <|channel|>commentary to=functions.NAME [<|constrain|>json]<|message|>ARGS    (OpenAI's guide)
//    to=functions.NAME<|channel|>commentary [json | <|constrain|>json]<|message|>ARGS  (gpt-oss's template)
// then its stop token <|call|> where that is not an EOS id (where it is, EOS ends the output anyway).
// Throws dpserve::Error for a name that cannot sit in a header.
ExprId harmony_call(Grammar& g, const std::string& name, ExprId args);

// The stop token `tag` (<|call|>, <|return|>), optional: an EOS id is never matched as text, so the
// output then ends at the EOS the grammar's end allows.
ExprId harmony_stop(Grammar& g, std::string_view tag);

}  // namespace dpserve::constrain
