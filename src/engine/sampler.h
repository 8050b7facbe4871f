// Picks the next token of one sequence from its logits: penalties, temperature,
// top-k / top-p / min-p, then a draw from the sequence's own random stream.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "engine/sampling_params.h"

namespace dpserve {

class Sampler {
 public:
  // `fallback_seed` seeds the stream when params.seed is unset (e.g. the request id).
  Sampler(const SamplingParams& params, uint64_t fallback_seed);

  // Registers prompt tokens (they count for the repetition penalty only).
  void add_prompt(const int32_t* ids, int64_t n);
  // Samples from logits[vocab] (modified in place) and records the token as generated.
  int32_t sample(float* logits, int64_t vocab);
  // Records a generated token chosen elsewhere (so penalties see it).
  void accept(int32_t id);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int32_t> generated_counts_;
  std::unordered_map<int32_t, bool> seen_;  // prompt or generated
  std::vector<std::pair<float, int32_t>> cand_;
};

// argmax with ties broken towards the lower id.
int32_t argmax(const float* x, int64_t n);

}  // namespace dpserve
