#include "model/llama4_experts.h"

#include <string>

#include "core/check.h"
#include "model/stacked_experts.h"

namespace dpserve {

void split_llama4_experts(const ModelConfig& c, WeightStore& store) {
  const int64_t E = c.n_experts, H = c.hidden, I = c.moe_ffn;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    store.rename_prefix(p + "feed_forward.", p + "mlp.");
    if (!c.layer_is_moe(l)) continue;
    store.rename(p + "mlp.router.weight", p + "mlp.gate.weight");
    store.rename_prefix(p + "mlp.shared_expert.", p + "mlp.shared_experts.");
    const std::string x = p + "mlp.experts.";
    if (!store.has(x + "gate_up_proj"))
      fail("weights: missing tensor \"{}\" (layer {} is a mixture of experts: moe_layers / interleave_moe_layer_step)",
           x + "gate_up_proj", l);
    const TensorInfo gu = stacked_float(store, x + "gate_up_proj", {E, H, 2 * I});
    const TensorInfo dn = stacked_float(store, x + "down_proj", {E, I, H});
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = x + std::to_string(e) + ".";
      add_expert_columns(store, q + "gate_proj.weight", gu, e, 0, 1, I);
      add_expert_columns(store, q + "up_proj.weight", gu, e, I, 1, I);
      add_expert_columns(store, q + "down_proj.weight", dn, e, 0, 1, H);
    }
    store.remove(x + "gate_up_proj");
    store.remove(x + "down_proj");
  }
}

}  // namespace dpserve
