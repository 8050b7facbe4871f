// Where a forward step's time goes, phase by phase (for benchmarks: bench/generate_bench.cpp).
//
// A StepPhaseClock attached to a Model (Model::set_phase_clock) reads the clock on the team
// leader at the end of each phase of the steps it records (those of at most max_tokens() tokens,
// e.g. 1 for single-stream decode): the time since the previous reading is that phase's. Every
// product ends with a team barrier, so the leader's clock there is the whole team's. What is not a
// named phase (norms, the embedding row, residual adds) is kRest.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace dpserve {

enum class StepPhase : int {
  kQkv,        // q/k/v projections (one pass over the activations)
  kAttention,  // q/k norms, RoPE, K/V into the cache, attention (an MLA layer: its whole attention block)
  kOProj,      // the output projection (with its all-reduce across attention ranks)
  kGateUp,     // a dense MLP's gate/up product (SwiGLU fused)
  kDown,       // a dense MLP's down projection (with its all-reduce / DP scatter)
  kExperts,    // a MoE layer: router, experts and shared experts
  kLmHead,     // the LM head (with its vocabulary all-gather)
  kRest,       // everything else
  kCount
};

// "qkv", "attention", ... (the names the benchmark prints).
const char* step_phase_name(StepPhase p);

class StepPhaseClock {
 public:
  static constexpr int kPhases = int(StepPhase::kCount);

  // Records steps of at most max_tokens tokens (>= 1).
  explicit StepPhaseClock(int64_t max_tokens);
  int64_t max_tokens() const { return max_tokens_; }

  // The model calls these on the team leader: begin() as a recorded step starts, mark(p) as phase
  // p ends, end() as the step ends (the time since the last mark is kRest's).
  void begin();
  void mark(StepPhase p);
  void end();

  // Totals over the recorded steps. Not synchronised with a running step: read and reset while the
  // model is idle (between requests).
  int64_t steps() const { return steps_; }
  double seconds(StepPhase p) const { return seconds_[std::size_t(p)]; }
  // How many times phase p ended (e.g. once a layer a step for kQkv).
  int64_t marks(StepPhase p) const { return marks_[std::size_t(p)]; }
  double total_seconds() const;
  void reset();

 private:
  int64_t max_tokens_;
  int64_t last_ns_ = 0;
  int64_t steps_ = 0;
  std::array<double, kPhases> seconds_{};
  std::array<int64_t, kPhases> marks_{};
};

}  // namespace dpserve
