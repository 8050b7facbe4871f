#include "engine/verify_cost.h"

#include <algorithm>
#include <cmath>

namespace dpserve {

double expected_distinct_experts(int64_t experts, int64_t per_row, int64_t rows) {
  if (experts <= 0 || per_row <= 0 || rows <= 0) return 0.0;
  const double miss = 1.0 - double(std::min(per_row, experts)) / double(experts);
  return double(experts) * (1.0 - std::pow(miss, double(rows)));
}

namespace {

// Weights of one layer that every row reads (attention, a dense MLP or the shared experts) and those
// of the experts one row routes to, in parameters: the bytes scale alike for one model.
struct LayerParams {
  double shared = 0;
  double per_expert = 0;  // one routed expert; 0 in a dense layer
};

LayerParams layer_params(const ModelConfig& c, int64_t layer) {
  const double h = double(c.hidden);
  LayerParams p;
  if (c.mla.enabled()) {
    const MlaConfig& m = c.mla;
    const double heads = double(c.n_heads);
    const double q = m.q_lora_rank > 0 ? h * double(m.q_lora_rank) + double(m.q_lora_rank) * heads * double(m.q_head_dim())
                                       : h * heads * double(m.q_head_dim());
    p.shared = q + h * double(m.kv_lora_rank + m.qk_rope_head_dim) +
               double(m.kv_lora_rank) * heads * double(m.qk_nope_head_dim + m.v_head_dim) +
               heads * double(m.v_head_dim) * h;
  } else {
    p.shared = 2.0 * h * double(c.n_heads * c.head_dim) + 2.0 * h * double(c.n_kv_heads * c.head_dim);
  }
  if (c.layer_is_moe(layer)) {
    p.per_expert = 3.0 * h * double(c.moe_ffn);
    p.shared += double(c.n_shared_experts) * p.per_expert + h * double(c.n_experts);  // shared experts, router
  } else {
    p.shared += 3.0 * h * double(c.ffn);
  }
  return p;
}

}  // namespace

std::vector<int32_t> verify_cost_permille(const ModelConfig& c, int64_t max_rows, int64_t chain_layers) {
  double shared = double(c.vocab) * double(c.hidden);  // the LM head
  double routed_per_row = 0;                            // the experts one row reads, all MoE layers
  double layer_total = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerParams p = layer_params(c, l);
    shared += p.shared;
    routed_per_row += double(c.n_experts_per_tok) * p.per_expert;
    layer_total += p.shared + double(c.n_experts_per_tok) * p.per_expert;
  }
  const double one_row = shared + routed_per_row;
  const double chain = c.n_layers > 0 ? double(chain_layers) * layer_total / double(c.n_layers) / one_row : 0.0;
  std::vector<int32_t> out;
  for (int64_t n = 1; n <= std::max<int64_t>(1, max_rows); ++n) {
    double reads = shared;
    if (routed_per_row > 0) {
      const double k = double(std::min(c.n_experts_per_tok, c.n_experts));
      reads += routed_per_row * expected_distinct_experts(c.n_experts, c.n_experts_per_tok, n) / k;
    }
    const double cost = reads / one_row + double(kRowComputePermille) / 1000.0 * double(n - 1) +
                        chain * double(std::max<int64_t>(0, n - 2));
    out.push_back(int32_t(std::lround(cost * 1000.0)));
  }
  return out;
}

}  // namespace dpserve
