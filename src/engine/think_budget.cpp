#include "engine/think_budget.h"

#include <utility>

namespace dpserve {

ThinkBudget::ThinkBudget(ThinkBudgetSpec spec)
    : spec_(std::move(spec)),
      phase_(!spec_.active() ? Phase::kOff : spec_.open_at_start ? Phase::kThinking : Phase::kBefore) {
  if (phase_ == Phase::kThinking && spec_.budget == 0) phase_ = Phase::kForcing;
}

int32_t ThinkBudget::forced_token() const { return phase_ == Phase::kForcing ? spec_.forced[forced_next_] : -1; }

void ThinkBudget::advance(int32_t token) {
  switch (phase_) {
    case Phase::kOff:
    case Phase::kDone: return;
    case Phase::kBefore:
      // Only a block the model opens itself counts; its first token is the tag.
      if (token == spec_.open_id) phase_ = spec_.budget == 0 ? Phase::kForcing : Phase::kThinking;
      return;
    case Phase::kThinking:
      if (token == spec_.close_id) {
        phase_ = Phase::kDone;
        return;
      }
      if (++used_ >= spec_.budget) phase_ = Phase::kForcing;
      return;
    case Phase::kForcing:
      if (++forced_next_ == spec_.forced.size()) phase_ = Phase::kDone;
      return;
  }
}

}  // namespace dpserve
