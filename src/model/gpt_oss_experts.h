// gpt-oss's experts as the MoE layer loads them: one gate, up and down matrix (with biases) per
// expert, from the checkpoint's stacked tensors.
//
// A checkpoint stores each layer's experts as one tensor per projection, in one of two forms:
//   dequantized (transformers' GptOssExperts): gate_up_proj [E, H, 2I] and down_proj [E, I, H], input
//     major (x @ W), with gate_up_proj_bias [E, 2I] and down_proj_bias [E, H];
//   MXFP4 (OpenAI's release): gate_up_proj_blocks [E, 2I, H/32, 16] and _scales [E, 2I, H/32], down_proj_*
//     [E, H, I/32, 16] / [E, H, I/32], output major: 32-element blocks of FP4 (e2m1) codes, two per byte,
//     the element 2b in byte b's low nibble, times 2^(scale - 127) (model/mxfp4.h, Pairs packing).
// In both, gate_up's 2I outputs interleave gate (even) and up (odd).
//
// Split per expert into model.layers.L.mlp.experts.E.{gate,up,down}_proj.{weight,bias}. Dense experts
// keep their dtype (transposed). MXFP4 blocks become Q8_0 blocks with the same values exactly (scale
// 2^(e - 128) as an f16, codes 2 x the FP4 value in -12..12) when every block's scale fits an f16,
// else bf16 (also exact).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

void split_gpt_oss_experts(const ModelConfig& c, WeightStore& store);

}  // namespace dpserve
