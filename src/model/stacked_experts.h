// Experts stored stacked and input major (transformers' GptOssExperts, Llama4TextExperts: x @ W, one
// [E, in, out] tensor per projection), rearranged into the per-expert output-major matrices the MoE
// layer loads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/weight_store.h"

namespace dpserve {

// The stacked float tensor `name` (F32, BF16 or F16) with the given shape, or a start-up error naming
// what config.json implies.
const TensorInfo& stacked_float(const WeightStore& store, const std::string& name, const std::vector<int64_t>& shape);

// Adds `name`: expert e's output columns col0, col0 + step, ... (n of them) of the stacked [E, in, out]
// tensor `t`, as an [n, in] matrix of t's dtype (one output per row, as every layer's weights are).
void add_expert_columns(WeightStore& store, const std::string& name, const TensorInfo& t, int64_t e, int64_t col0,
                        int64_t step, int64_t n);

}  // namespace dpserve
