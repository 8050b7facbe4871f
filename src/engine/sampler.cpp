#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dpserve {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& params, uint64_t fallback_seed)
    : p_(params), rng_(params.seed.value_or(fallback_seed)) {}

void Sampler::add_prompt(const int32_t* ids, int64_t n) {
  for (int64_t i = 0; i < n; ++i) seen_[ids[i]] = true;
}

void Sampler::accept(int32_t id) {
  ++generated_counts_[id];
  seen_[id] = true;
}

int32_t Sampler::sample(float* logits, int64_t vocab) {
  if (p_.repetition_penalty != 1.0f) {
    for (auto& [id, _] : seen_) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[id];
      l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
    }
  }
  if (p_.frequency_penalty != 0.0f || p_.presence_penalty != 0.0f) {
    for (auto& [id, cnt] : generated_counts_) {
      if (id < 0 || id >= vocab) continue;
      logits[id] -= p_.frequency_penalty * float(cnt) + p_.presence_penalty;
    }
  }
  int32_t tok;
  if (p_.temperature == 0.0f || p_.top_k == 1) {
    tok = argmax(logits, vocab);
  } else if (p_.top_k <= 0 && p_.top_p >= 1.0f && p_.min_p <= 0.0f) {
    // Nothing truncates the distribution: one pass over the softmax in id order, no sort (sorting a
    // 150k vocabulary per token costs milliseconds). Deterministic for a seed all the same.
    const float ninf = -std::numeric_limits<float>::infinity();
    float mx = ninf;
    for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
    if (mx == ninf) {
      tok = argmax(logits, vocab);
    } else {
      const double inv_t = 1.0 / double(p_.temperature);
      double total = 0;
      for (int64_t i = 0; i < vocab; ++i)
        if (logits[i] > ninf) total += std::exp((double(logits[i]) - mx) * inv_t);
      double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
      tok = -1;
      int32_t last = 0;
      for (int64_t i = 0; i < vocab && tok < 0; ++i) {
        if (!(logits[i] > ninf)) continue;
        last = int32_t(i);
        r -= std::exp((double(logits[i]) - mx) * inv_t);
        if (r < 0) tok = int32_t(i);
      }
      if (tok < 0) tok = last;  // rounding left r at the very end
    }
  } else {
    // Candidates sorted by logit (ties: lower id first), so the draw is reproducible.
    cand_.clear();
    for (int64_t i = 0; i < vocab; ++i)
      if (logits[i] > -std::numeric_limits<float>::infinity()) cand_.push_back({logits[i], int32_t(i)});
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t keep = cand_.size();
    if (p_.top_k > 0 && size_t(p_.top_k) < keep) {
      std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
      keep = size_t(p_.top_k);
      cand_.resize(keep);
    } else {
      std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    // Softmax at the temperature over the kept candidates.
    const double inv_t = 1.0 / double(p_.temperature);
    const double mx = cand_.empty() ? 0.0 : cand_[0].first;
    std::vector<double> prob(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp((double(cand_[i].first) - mx) * inv_t);
    for (auto& q : prob) q /= sum;
    size_t n = keep;
    if (p_.min_p > 0.0f && keep > 0) {
      const double floor_p = double(p_.min_p) * prob[0];
      size_t m = 1;
      while (m < n && prob[m] >= floor_p) ++m;
      n = m;
    }
    if (p_.top_p < 1.0f) {
      double cum = 0;
      size_t m = 0;
      while (m < n) {
        cum += prob[m++];
        if (cum >= double(p_.top_p)) break;
      }
      n = std::max<size_t>(m, 1);
    }
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += prob[i];
    double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
    size_t pick = n - 1;
    for (size_t i = 0; i < n; ++i) {
      r -= prob[i];
      if (r < 0) {
        pick = i;
        break;
      }
    }
    tok = cand_.empty() ? argmax(logits, vocab) : cand_[pick].second;
  }
  accept(tok);
  return tok;
}

}  // namespace dpserve
