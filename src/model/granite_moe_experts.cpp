#include "model/granite_moe_experts.h"

#include <string>
#include <utility>
#include <vector>

namespace dpserve {

void split_granite_moe_experts(const ModelConfig& c, WeightStore& store) {
  const int64_t E = c.n_experts, F = c.moe_ffn, H = c.hidden;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string moe = p + "block_sparse_moe.", experts = p + "mlp.experts.";
    std::vector<std::pair<std::string, int64_t>> gate_up, down;
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = experts + std::to_string(e) + ".";
      gate_up.emplace_back(q + "gate_proj.weight", F);
      gate_up.emplace_back(q + "up_proj.weight", F);
      down.emplace_back(q + "down_proj.weight", H);
    }
    store.split_rows(moe + "input_linear.weight", gate_up);
    store.split_rows(moe + "output_linear.weight", down);
    store.rename_prefix(moe + "router.layer.", p + "mlp.gate.");
  }
}

}  // namespace dpserve
