// Hugging Face tokenizer.json tokenizers (BPE model: byte-level as Qwen2/3 and Llama-3, or
// SentencePiece-style with byte fallback as Llama-2 / Mistral / TinyLlama), with the config files beside it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

// The pieces of a BPE tokenizer given directly rather than read from tokenizer.json (a GGUF
// vocabulary): the same pipeline runs, so both kinds of file encode and decode alike.
struct HfTokenizerParts {
  nlohmann::json normalizer;     // as tokenizer.json's "normalizer" (null: none)
  nlohmann::json pre_tokenizer;  // as "pre_tokenizer" (null: the text is one word)
  nlohmann::json decoder;        // as "decoder"
  std::unique_ptr<BpeModel> model;
  std::vector<AddedToken> added;        // matched in text before the model runs
  std::vector<int32_t> prefix, suffix;  // ids encode(..., add_special_tokens=true) puts around the text
  int32_t bos_id = -1;                  // -1: the model adds no BOS
  std::vector<int32_t> eos_ids;         // stop ids, the first is the EOS token
  std::optional<std::string> chat_template;
};

class HfTokenizer {
 public:
  // `json_path` is tokenizer.json; tokenizer_config.json, special_tokens_map.json,
  // generation_config.json and the chat template's own files (chat_template.jinja, a processor's
  // chat_template.json) are read from the same folder where present.
  static std::unique_ptr<Tokenizer> load(const std::string& json_path);
  // Throws dpserve::Error when the parts do not fit together (ids out of range, unknown types).
  static std::unique_ptr<Tokenizer> from_parts(HfTokenizerParts parts);
};

}  // namespace dpserve
