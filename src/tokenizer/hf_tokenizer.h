// Hugging Face tokenizer.json tokenizers (BPE model: byte-level as Qwen2/3 and Llama-3, or
// SentencePiece-style with byte fallback as Llama-2 / Mistral / TinyLlama), with the config files beside it.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace dpserve {

class HfTokenizer {
 public:
  // `json_path` is tokenizer.json; tokenizer_config.json, special_tokens_map.json and
  // generation_config.json are read from the same folder where present.
  static std::unique_ptr<Tokenizer> load(const std::string& json_path);
};

}  // namespace dpserve
