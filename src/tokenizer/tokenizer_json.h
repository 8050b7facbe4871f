// Reads a tokenizer.json in one pass. The BPE model's vocab and merges, most of the file (150k entries
// each in Qwen's or Llama 3's), go straight into flat arrays; everything else becomes a JSON document.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dpserve {

struct TokenizerJson {
  // The whole file except model.vocab and model.merges when those were read into the arrays below.
  nlohmann::json doc;
  bool has_vocab = false;  // model.vocab was an object of token -> id, now in `vocab`
  std::vector<std::pair<std::string, int32_t>> vocab;  // in file order; a repeated token is listed twice
  bool has_merges = false;  // model.merges was an array, now in `merges`
  // Best first. A merge is ["left", "right"] or, in older files, "left right" split at its first space
  // after the first byte (byte-level tokens hold no space).
  std::vector<std::pair<std::string, std::string>> merges;
};

// Throws dpserve::Error naming the problem and where it is (`name` is the file, for messages): text
// that is not JSON, a vocab id that is not an integer in [0, 2^31), a merge that is not two tokens.
TokenizerJson parse_tokenizer_json(std::string_view text, std::string_view name);

}  // namespace dpserve
