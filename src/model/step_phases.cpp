#include "model/step_phases.h"

#include <chrono>

#include "core/check.h"

namespace dpserve {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

const char* step_phase_name(StepPhase p) {
  switch (p) {
    case StepPhase::kQkv: return "qkv";
    case StepPhase::kAttention: return "attention";
    case StepPhase::kOProj: return "o_proj";
    case StepPhase::kGateUp: return "gate_up";
    case StepPhase::kDown: return "down";
    case StepPhase::kExperts: return "experts";
    case StepPhase::kLmHead: return "lm_head";
    case StepPhase::kRest: return "rest";
    case StepPhase::kCount: break;
  }
  return "?";
}

StepPhaseClock::StepPhaseClock(int64_t max_tokens) : max_tokens_(max_tokens) {
  DP_CHECK(max_tokens >= 1, "a phase clock records steps of at least one token (got {})", max_tokens);
}

void StepPhaseClock::begin() { last_ns_ = now_ns(); }

void StepPhaseClock::mark(StepPhase p) {
  const int64_t t = now_ns();
  seconds_[std::size_t(p)] += double(t - last_ns_) * 1e-9;
  ++marks_[std::size_t(p)];
  last_ns_ = t;
}

void StepPhaseClock::end() {
  mark(StepPhase::kRest);
  ++steps_;
}

double StepPhaseClock::total_seconds() const {
  double s = 0;
  for (double v : seconds_) s += v;
  return s;
}

void StepPhaseClock::reset() {
  steps_ = 0;
  seconds_.fill(0);
  marks_.fill(0);
}

}  // namespace dpserve
