// Granite-MoE's experts as the MoE layer loads them: one gate, up and down matrix per expert and the
// router under the names every MoE here uses (mlp.gate, mlp.experts.E.{gate,up,down}_proj).
//
// The checkpoint (transformers' GraniteMoeMoE, JetMoE's parallel experts) stores per layer
//   block_sparse_moe.input_linear.weight  [E, 2F, H]: expert e's gate rows (the first F), then its up rows,
//   block_sparse_moe.output_linear.weight [E, H, F]: expert e's down projection,
//   block_sparse_moe.router.layer.weight  [E, H]:    the router,
// all output major. Split into views (no copy) and renamed.
#pragma once

#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

void split_granite_moe_experts(const ModelConfig& c, WeightStore& store);

}  // namespace dpserve
