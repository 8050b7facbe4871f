// Runs a fixed set of prompts to completion on one rank's model: all prompts
// prefill together (in chunks), then decode together one token per step.
// The engine behind `dpserve generate` and the offline benchmarks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/sampling_params.h"
#include "model/model.h"

namespace dpserve {

struct GenRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

struct GenResult {
  std::vector<int32_t> output;
  std::string finish_reason;  // "length" or "stop"
};

struct GenStats {
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  int64_t steps = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

struct RunnerOptions {
  int64_t page_size = 16;
  int64_t prefill_chunk = 2048;  // tokens per prefill forward pass
  bool keep_logits = false;      // pass every position's logits to on_logits
};

class OfflineRunner {
 public:
  using TokenFn = std::function<void(size_t request, int32_t token)>;
  // (request, position, logits[vocab]) for every prompt position and generated step.
  using LogitsFn = std::function<void(size_t request, int64_t pos, const float* logits)>;

  OfflineRunner(Model& model, std::vector<int32_t> eos_ids, RunnerOptions opts = {});

  std::vector<GenResult> run(const std::vector<GenRequest>& reqs, const TokenFn& on_token = {},
                             const LogitsFn& on_logits = {});
  const GenStats& stats() const { return stats_; }

 private:
  Model& model_;
  std::vector<int32_t> eos_;
  RunnerOptions opts_;
  GenStats stats_;
};

}  // namespace dpserve
