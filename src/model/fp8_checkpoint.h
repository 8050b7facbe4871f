// Fp8 checkpoints, as DeepSeek-V3 / R1, Kimi K2, the Qwen3 "-FP8" releases and MiniMax-M2 are
// published (config.json's quantization_config: quant_method "fp8", fmt e4m3, dynamic activations,
// weight_block_size [rows, cols]): linear weights stored as F8_E4M3, each beside a
// "<name>_scale_inv" tensor of one fp32 scale per block. The load pairs them; the matrices are then
// converted as they are prepared (model/weight_prep.h) to bf16, the values DeepSeek's own cast
// gives, or to --quantization's type, and run as such (no CPU kernel reads fp8 weights).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

// Reads config.json's quantization_config into c.fp8_block_rows / cols. Absent or null: nothing.
// quant_method "fp8" with anything dpserve cannot honour (another fmt, static activation scales, no
// weight_block_size, an unknown key), and every other method but gpt-oss's mxfp4, are start-up
// errors naming the field.
void read_quantization_config(const nlohmann::json& config, ModelConfig& c);

// Gives every F8_E4M3 tensor of `store` its scales (the "<name>_scale_inv" tensor beside it, which
// is consumed): 2-D weights only, scales of shape [ceil(rows / block rows), ceil(cols / block
// cols)], a checkpoint whose config says fp8. Anything else is a start-up error naming the tensor.
void attach_fp8_scales(const ModelConfig& c, WeightStore& store);

}  // namespace dpserve
