// The MoE gate's selection rule: one token's router logits -> its k (expert, weight) pairs.
//
// Covers Qwen3-MoE and Mixtral (softmax, greedy top-k, optional renormalisation) and DeepSeekMoE
// (softmax or sigmoid scores; greedy, group-limited greedy or noaux_tc selection with a per-expert
// correction bias that steers the choice but not the weights; normalisation and a routed scaling
// factor). Ties go to the lower expert id, so every rank picks the same experts.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dpserve {

struct ExpertChoice {
  int32_t expert = 0;
  float weight = 0;
};

class MoeRouter {
 public:
  // `correction_bias`: n_experts values for noaux_tc, empty otherwise.
  MoeRouter(const MoeRouting& r, int64_t n_experts, int64_t k, std::vector<float> correction_bias = {});

  // logits: the token's n_experts router logits (used as scratch). Writes k choices to `out`,
  // in order of decreasing selection score.
  void route(float* logits, ExpertChoice* out) const;

  int64_t k() const { return k_; }
  int64_t n_experts() const { return n_; }

 private:
  MoeRouting r_;
  int64_t n_, k_;
  std::vector<float> bias_;
};

}  // namespace dpserve
