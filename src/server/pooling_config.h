// --is-embedding: how the served model turns hidden states into an embedding, read from its folder
// as sentence-transformers writes it (modules.json, 1_Pooling/config.json, a Normalize module) and
// from config.json (Matryoshka dimensions, vLLM's convention), with the flags' overrides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"

namespace dpserve {

struct EmbeddingConfig {
  bool enabled = false;                // --is-embedding
  Pooling pooling = Pooling::kLast;
  bool normalize = true;               // L2-normalise the pooled vector
  // `dimensions` is accepted when the model declares Matryoshka training: any size 1..hidden, or
  // only the listed ones when config.json lists them.
  bool matryoshka = false;
  std::vector<int64_t> matryoshka_dims;
  std::string source;                  // where pooling and normalisation came from (start-up log)
};

// `pooling_flag`: "auto" (the folder's, else last-token) or last / mean / cls; `normalize_flag`:
// "auto" (a Normalize module in modules.json; without modules.json, on) or true / false. A
// pooling mode the folder asks for that dpserve lacks (max, weighted mean, ...) fails naming the file.
EmbeddingConfig load_embedding_config(const std::string& model_dir, const std::string& pooling_flag,
                                      const std::string& normalize_flag);

}  // namespace dpserve
