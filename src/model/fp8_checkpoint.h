// Fp8 checkpoints: linear weights stored as F8_E4M3, each beside a tensor of fp32 scales, one per
// block of elements. Two layouts:
//   * quant_method "fp8" (DeepSeek-V3 / R1, Kimi K2, the Qwen3 "-FP8" releases, MiniMax-M2): fmt e4m3,
//     dynamic activations, weight_block_size [rows, cols], scales in "<weight>_scale_inv";
//   * quant_method "compressed-tensors", format "float-quantized" (llm-compressor's FP8 / FP8-dynamic /
//     FP8-block checkpoints, as RedHatAI publishes many): 8-bit symmetric float weights with one scale per output
//     channel, per tensor or per block_structure block, in "<weight>_scale"; dynamic or no activation
//     quantization.
// The load pairs weights and scales; the matrices are then converted as they are prepared
// (model/weight_prep.h) to bf16 (the fp32 product code * scale, rounded), the values DeepSeek's own
// cast and compressed-tensors' decompression give, or to --quantization's type, and run as such (no
// CPU kernel reads fp8 weights).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

// Reads config.json's quantization_config into c.fp8_*. Absent or null: nothing. Anything dpserve
// cannot honour (another fmt or format, integer or 4-bit weights, static activation scales, scales
// per group, an unknown key) and every other method but gpt-oss's mxfp4 are start-up errors naming
// the field.
void read_quantization_config(const nlohmann::json& config, ModelConfig& c);

// Gives every F8_E4M3 tensor of `store` its scales (the "<name>_scale_inv" or "<name>_scale" tensor
// beside it, which is consumed): 2-D weights only, scales of shape [ceil(rows / block rows),
// ceil(cols / block cols)] (a per-tensor scale may be [1] or []), a checkpoint whose config says
// fp8. Anything else is a start-up error naming the tensor.
void attach_fp8_scales(const ModelConfig& c, WeightStore& store);

}  // namespace dpserve
