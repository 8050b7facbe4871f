// Llama 4's feed-forward blocks under the names every MoE here loads (mlp.gate, mlp.experts.E.*,
// mlp.shared_experts.*; dense layers mlp.*).
//
// transformers' Llama4TextDecoderLayer keeps its MLP under feed_forward.: dense layers as gate_proj /
// up_proj / down_proj, sparse ones (Llama4TextMoe) as
//   router.weight [E, H], shared_expert.{gate,up,down}_proj.weight (an always-on expert, unweighted),
//   experts.gate_up_proj [E, H, 2I]: input major, each expert's gate columns first, then its up columns,
//   experts.down_proj [E, I, H]: input major.
// The stacked experts are copied into per-expert output-major matrices (their dtype kept); the rest are renamed.
#pragma once

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

void split_llama4_experts(const ModelConfig& c, WeightStore& store);

}  // namespace dpserve
