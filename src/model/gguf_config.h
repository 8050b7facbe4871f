// ModelConfig from a GGUF model's metadata (`<arch>.block_count`, `.attention.head_count`,
// `.rope.freq_base`, ...), with what only the tensors tell: vocabulary size, tied embeddings,
// llama3-style RoPE frequency factors (`rope_freqs.weight`), Q/K/V biases and dense layers of a
// MoE model.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/gguf_arch.h"
#include "model/gguf_set.h"

namespace dpserve {

// The largest width (hidden size, head count, head dimension, MLA ranks) a GGUF's metadata may give:
// a hostile file cannot size tables by absurd values before the tensor shapes would catch them.
constexpr int64_t kGgufMaxWidth = int64_t(1) << 20;

// Throws dpserve::Error naming the key (or tensor) that is missing, mistyped or out of range, and
// naming the architecture when dpserve does not run it.
ModelConfig gguf_model_config(const GgufSet& g);

// The architecture row of the model (general.architecture), or an error naming it.
const GgufArch& gguf_model_arch(const GgufSet& g);

}  // namespace dpserve
