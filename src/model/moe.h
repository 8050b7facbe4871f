// A sparse mixture-of-experts MLP (Qwen3-MoE): softmax router, top-k experts per
// token, weighted sum of the chosen experts' SiLU-gated MLPs.
//
// Experts are split over the MLP ranks: whole experts over the expert-parallel
// ranks, and each expert's intermediate dimension over the MoE tensor-parallel
// ranks. Each rank routes every token itself (the router is tiny and the inputs
// are identical on every rank) and computes only its share, skipping experts no
// token chose; the caller sums the partial outputs over ranks.
#pragma once

#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "model/config.h"
#include "model/parallel.h"
#include "model/weight_store.h"

namespace dpserve {

class MoeLayer {
 public:
  MoeLayer(const WeightStore& store, const ModelConfig& c, const std::string& prefix, const ShardSpec& ep,
           const ShardSpec& moe_tp);

  // out[T, hidden] = this rank's experts' share of the MoE output for x[T, hidden]. Rows with
  // skip[row] != 0 (DP padding) are routed nowhere and get zeros.
  void forward(const float* x, int64_t T, float* out, const uint8_t* skip = nullptr);

  int64_t first_expert() const { return e0_; }
  int64_t n_local_experts() const { return int64_t(experts_.size()); }

 private:
  struct Expert {
    WeightView gate, up, down;
  };
  const ModelConfig& cfg_;
  WeightView router_;
  int64_t e0_ = 0;
  std::vector<Expert> experts_;
  int64_t ffn_local_ = 0;
  std::vector<float> logits_, xs_, g_, u_, y_;
};

}  // namespace dpserve
