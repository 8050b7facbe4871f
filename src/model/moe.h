// A sparse mixture-of-experts MLP (Qwen3-MoE, Mixtral, DeepSeekMoE, gpt-oss, Llama 4): a router picks
// k experts per token (model/moe_router.h), the output is the weighted sum of the chosen
// experts' gated MLPs (SiLU; gpt-oss's clamped form, with biases; Llama 4 weighs each expert's
// input instead), plus DeepSeek's always-on shared experts or Qwen2-MoE's sigmoid-gated shared expert.
//
// Experts are split over the MLP ranks: whole experts over the expert-parallel
// ranks, and each expert's intermediate dimension over the MoE tensor-parallel
// ranks. Each rank routes every token itself (the router is tiny and the inputs
// are identical on every rank) and computes only its share, skipping experts no
// token chose; shared experts are split over all MLP ranks like a dense MLP. The
// caller sums the partial outputs over ranks.
#pragma once

#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "model/config.h"
#include "model/dense_mlp.h"
#include "model/moe_router.h"
#include "model/parallel.h"
#include "model/weight_store.h"

namespace dpserve {

class WeightPrep;

// The step scratch of a rank's MoE layers: router logits, each token's picks, the experts' gated
// rows. Layers run one after another, so they share one (the model owns it) instead of each
// keeping its own: the gated rows alone are T x k x ffn floats, 100 MB a layer at a 4096-row step
// on Qwen3-30B-A3B's shape, 48 layers of them.
struct MoeScratch {
  std::vector<float> logits, h, pick_w, shared_h, shared_gate;
  std::vector<float> weighted_in;  // Llama 4: each (token, local expert) input times its router weight
  std::vector<int32_t> pick_e;
};

class MoeLayer {
 public:
  // `prefix`: the layer's "model.layers.N." (tensor names follow the architecture).
  MoeLayer(const WeightStore& store, const ModelConfig& c, const std::string& prefix, const ModelParallel& par);

  // out[T, hidden] = this rank's experts' share of the MoE output for x[T, hidden] (`accumulate`:
  // added to out instead). Rows with skip[row] != 0 (DP padding) are routed nowhere (zeros).
  // Collective over the team: router, top-k, the chosen experts' products back to back, and the
  // weighted sum, with no per-expert fork/join or copies. `s` must be reserve()d for T first.
  void forward(Team& t, MoeScratch& s, const float* x, int64_t T, float* out, bool accumulate,
               const uint8_t* skip = nullptr) const;
  // Grows `s` to hold this layer's scratch for up to T rows (on the step thread, before the team runs).
  void reserve(MoeScratch& s, int64_t T) const;

  // Registers this rank's expert matrices (and the router, which recipes keep float) with `prep`.
  void add_weights(WeightPrep& prep, int64_t layer, const std::string& prefix);

  int64_t first_expert() const { return e0_; }
  int64_t n_local_experts() const { return int64_t(experts_.size()); }
  // This rank's routed experts' matrices together, as run: bytes, and elements (a token reads k of
  // the model's n experts; the router and shared experts are not in these).
  int64_t routed_bytes() const;
  int64_t routed_params() const;
  // Bytes one token's pass reads: the router, the shared experts, and k of n routed experts (as
  // that share of this rank's: exact on one rank, whose experts of a layer are all one size).
  int64_t token_bytes() const;

 private:
  struct Expert {
    WeightView gate, up, down;
    std::vector<float> gate_bias, up_bias, down_bias;  // gpt-oss (else empty)
  };
  const ModelConfig& cfg_;
  WeightView router_;
  std::vector<float> router_bias_;  // gpt-oss (else empty)
  MoeRouter route_;
  DenseMlp shared_;
  std::vector<float> shared_gate_;  // Qwen2-MoE: [hidden], the shared expert's per-token sigmoid gate
  int64_t e0_ = 0;
  std::vector<Expert> experts_;
  int64_t ffn_local_ = 0;
  // One token's k experts (ascending ids) and their weights, from its router logits.
  void route(const float* logits, int32_t* experts, float* weights) const;
};

}  // namespace dpserve
