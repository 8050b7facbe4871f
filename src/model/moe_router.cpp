#include "model/moe_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"
#include "kernels/ops.h"

namespace dpserve {

MoeRouter::MoeRouter(const MoeRouting& r, int64_t n_experts, int64_t k, std::vector<float> correction_bias)
    : r_(r), n_(n_experts), k_(k), bias_(std::move(correction_bias)) {
  DP_CHECK(k_ >= 1 && k_ <= n_, "top-{} of {} experts", k_, n_);
  DP_CHECK(r_.topk != MoeRouting::TopK::NoauxTc || int64_t(bias_.size()) == n_, "noaux_tc needs its bias");
  DP_CHECK(r_.topk == MoeRouting::TopK::Greedy || (r_.n_group >= 1 && n_ % r_.n_group == 0));
}

namespace {

// Indices of the k largest values, larger first; equal values: lower index first (deterministic).
void top_k(const float* v, int64_t n, int64_t k, int64_t* idx) {
  thread_local std::vector<int64_t> order;
  order.resize(size_t(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy(order.begin(), order.begin() + k, idx);
}

}  // namespace

void MoeRouter::route(float* logits, ExpertChoice* out) const {
  using TopK = MoeRouting::TopK;
  float* scores = logits;  // the weights come from these
  if (r_.scoring == MoeRouting::Scoring::Softmax) {
    softmax(scores, n_);
  } else {
    for (int64_t e = 0; e < n_; ++e) scores[e] = 1.0f / (1.0f + std::exp(-scores[e]));
  }
  // What the selection compares: the scores, plus the correction bias for noaux_tc.
  thread_local std::vector<float> choice;
  choice.assign(scores, scores + n_);
  if (r_.topk == TopK::NoauxTc)
    for (int64_t e = 0; e < n_; ++e) choice[size_t(e)] += bias_[size_t(e)];
  if (r_.topk != TopK::Greedy) {
    // Rank the groups (by their best expert, or by the sum of their two best for noaux_tc), keep
    // topk_group of them, and zero the others' experts as the reference implementations do (a
    // zeroed expert can still win if every kept one scores below zero).
    const int64_t G = r_.n_group, per = n_ / G;
    thread_local std::vector<float> group_score;
    group_score.assign(size_t(G), 0.0f);
    for (int64_t g = 0; g < G; ++g) {
      const float* c = &choice[size_t(g * per)];
      if (r_.topk == TopK::GroupLimitedGreedy) {
        group_score[size_t(g)] = *std::max_element(c, c + per);
      } else {
        int64_t best[2];
        top_k(c, per, 2, best);
        group_score[size_t(g)] = c[best[0]] + c[best[1]];
      }
    }
    thread_local std::vector<int64_t> kept;
    kept.resize(size_t(r_.topk_group));
    top_k(group_score.data(), G, r_.topk_group, kept.data());
    thread_local std::vector<uint8_t> keep;
    keep.assign(size_t(G), 0);
    for (int64_t g : kept) keep[size_t(g)] = 1;
    for (int64_t e = 0; e < n_; ++e)
      if (!keep[size_t(e / per)]) choice[size_t(e)] = 0.0f;
  }
  thread_local std::vector<int64_t> idx;
  idx.resize(size_t(k_));
  top_k(choice.data(), n_, k_, idx.data());
  double sum = 0;
  for (int64_t i = 0; i < k_; ++i) sum += scores[idx[size_t(i)]];
  for (int64_t i = 0; i < k_; ++i) {
    double w = scores[idx[size_t(i)]];
    if (r_.normalize) w /= sum + 1e-20;
    if (!r_.normalize || r_.scale_normalized) w *= r_.scaling;
    out[i] = ExpertChoice{int32_t(idx[size_t(i)]), float(w)};
  }
}

}  // namespace dpserve
