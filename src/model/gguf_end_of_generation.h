// Which tokens end generation for a GGUF model. Converters write one EOS id (and sometimes an
// end-of-turn / end-of-message id), while the model may end a turn with any of several tokens
// (Llama 3.1: <|eot_id|>, <|eom_id|> after a tool call, <|end_of_text|>; Qwen: <|im_end|>,
// <|endoftext|>). llama.cpp therefore also stops on tokens whose text is a known end marker, and
// so does this, so that a GGUF file stops where the same model's Hugging Face folder
// (generation_config.json's eos_token_id list) and llama.cpp stop.
#pragma once

#include <cstdint>
#include <vector>

#include "model/gguf_file.h"

namespace dpserve {

// tokenizer.ggml.eos_token_id, eot_token_id, eom_token_id (those inside the vocabulary), then every
// token whose text is a known end-of-turn marker; no duplicates, in that order.
std::vector<int32_t> gguf_end_of_generation_ids(const GgufMetadata& m);

}  // namespace dpserve
