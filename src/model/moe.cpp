#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "model/weight_prep.h"

namespace dpserve {

namespace {

// Where the MoE block's tensors live, per architecture.
struct MoeNames {
  std::string block;  // the sparse block under the layer prefix
  MlpNames expert;
};

MoeNames moe_names(const ModelConfig& c) {
  if (c.arch == Arch::Mixtral) return {"block_sparse_moe.", {"w1.weight", "w3.weight", "w2.weight"}};
  return {"mlp.", {}};
}

std::vector<float> correction_bias(const WeightStore& store, const ModelConfig& c, const std::string& block) {
  if (c.routing.topk != MoeRouting::TopK::NoauxTc) return {};
  return store.vector_f32(block + "gate.e_score_correction_bias", c.n_experts);
}

}  // namespace

MoeLayer::MoeLayer(const WeightStore& store, const ModelConfig& c, const std::string& layer,
                   const ModelParallel& par)
    : cfg_(c),
      route_(c.routing, c.n_experts, c.n_experts_per_tok, correction_bias(store, c, layer + moe_names(c).block)) {
  const ShardSpec &ep = par.ep, &moe_tp = par.moe_tp;
  const MoeNames names = moe_names(c);
  const std::string p = layer + names.block;
  const int64_t H = c.hidden, F = c.moe_ffn, E = c.n_experts;
  router_ = store.matrix(p + "gate.weight", E, H);
  if (E % ep.size != 0) fail("--ep-size: {} experts cannot be split evenly over {} ranks", E, ep.size);
  if (F % moe_tp.size != 0)
    fail("--ep-size/--tp-size: moe_intermediate_size {} cannot be split over {} ranks (raise --ep-size)", F,
         moe_tp.size);
  e0_ = ep.begin(E);
  ffn_local_ = F / moe_tp.size;
  const int64_t f0 = moe_tp.rank * ffn_local_;
  for (int64_t e = e0_; e < ep.end(E); ++e) {
    const std::string q = p + "experts." + std::to_string(e) + ".";
    experts_.push_back(Expert{store.matrix(q + names.expert.gate, F, H).row_slice(f0, ffn_local_),
                              store.matrix(q + names.expert.up, F, H).row_slice(f0, ffn_local_),
                              shard_cols(store.matrix(q + names.expert.down, H, F), f0, ffn_local_,
                                         q + names.expert.down, "--tp-size / --ep-size")});
  }
  if (c.n_shared_experts > 0)
    shared_ = DenseMlp(store, p + "shared_experts.", names.expert, H, c.n_shared_experts * F, par.mlp, "shared experts'");
}

void MoeLayer::add_weights(WeightPrep& prep, int64_t layer, const std::string& p) {
  prep.add(&router_, WeightRole::kRouter, layer, cfg_.hidden, p + "mlp.gate.weight");
  for (size_t i = 0; i < experts_.size(); ++i) {
    const std::string q = p + "mlp.experts." + std::to_string(e0_ + int64_t(i)) + ".";
    prep.add(&experts_[i].gate, WeightRole::kMlpGate, layer, cfg_.hidden, q + "gate_proj.weight");
    prep.add(&experts_[i].up, WeightRole::kMlpUp, layer, cfg_.hidden, q + "up_proj.weight");
    prep.add(&experts_[i].down, WeightRole::kMlpDown, layer, cfg_.moe_ffn, q + "down_proj.weight");
  }
}

void MoeLayer::forward(const float* x, int64_t T, float* out, const uint8_t* skip) {
  const int64_t H = cfg_.hidden, F = ffn_local_, E = cfg_.n_experts, K = cfg_.n_experts_per_tok;
  std::memset(out, 0, sizeof(float) * size_t(T * H));
  if (T == 0) return;
  if (int64_t(logits_.size()) < T * E) logits_.resize(size_t(T * E));
  matmul(x, T, H, router_, nullptr, logits_.data(), E);

  // Per local expert: the tokens that chose it and their routing weights.
  const int64_t nloc = n_local_experts();
  auto chosen = std::vector<std::vector<std::pair<int64_t, float>>>(static_cast<size_t>(nloc));
  picks_.resize(size_t(K));
  for (int64_t t = 0; t < T; ++t) {
    if (skip && skip[t]) continue;
    route_.route(&logits_[t * E], picks_.data());
    for (const ExpertChoice& pk : picks_) {
      const int64_t e = pk.expert;
      if (e < e0_ || e >= e0_ + nloc) continue;
      chosen[size_t(e - e0_)].push_back({t, pk.weight});
    }
  }
  for (int64_t e = 0; e < nloc; ++e) {
    const auto& rows = chosen[size_t(e)];
    const int64_t n = int64_t(rows.size());
    if (n == 0) continue;  // no work for an expert no token chose
    if (int64_t(xs_.size()) < n * H) xs_.resize(size_t(n * H));
    if (int64_t(g_.size()) < n * F) g_.resize(size_t(n * F)), u_.resize(size_t(n * F));
    if (int64_t(y_.size()) < n * H) y_.resize(size_t(n * H));
    for (int64_t i = 0; i < n; ++i) std::memcpy(&xs_[i * H], x + rows[i].first * H, sizeof(float) * size_t(H));
    const Expert& ex = experts_[size_t(e)];
    const MatmulOut gate_up[2] = {{ex.gate, nullptr, g_.data(), F}, {ex.up, nullptr, u_.data(), F}};
    matmul_multi(xs_.data(), n, H, gate_up, 2);
    silu_mul(g_.data(), u_.data(), g_.data(), n * F);
    matmul(g_.data(), n, F, ex.down, nullptr, y_.data(), H);
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + rows[i].first * H;
      const float w = rows[i].second;
      const float* y = &y_[i * H];
      for (int64_t j = 0; j < H; ++j) o[j] += w * y[j];
    }
  }
  // Shared experts see every row; DP padding rows are zeros and their output is ignored.
  if (!shared_.empty()) shared_.forward(x, T, out, true);
}

}  // namespace dpserve
