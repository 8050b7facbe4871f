// The tokenizer a GGUF model carries in its `tokenizer.ggml.*` metadata: `llama` vocabularies
// (SentencePiece pieces, scores and types) and `gpt2` ones (byte-level BPE with merges and the
// pre-tokenizer named by tokenizer.ggml.pre), built on the classes that read Hugging Face files, so
// both encode alike. BOS / EOS / end-of-turn ids, add_bos_token / add_eos_token and
// tokenizer.chat_template come along.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace dpserve {

// `path`: a .gguf file (any file of a split set: the vocabulary is in the first) or a folder holding
// one GGUF model. Throws dpserve::Error naming the key at fault, or an unknown tokenizer.ggml.pre.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path);

}  // namespace dpserve
