#include "server/admission.h"

namespace dpserve {

namespace {

bool over(int64_t max, int64_t v) { return max > 0 && v > max; }

}  // namespace

Admission::Verdict Admission::admit(const Work& w, std::shared_ptr<void>& slot) {
  {
    std::lock_guard lk(mu_);
    if (over(max_sequences_, w.sequences) || over(max_tokens_, w.tokens) || over(max_logprobs_, w.logprobs) ||
        over(max_values_, w.values))
      return Verdict::kTooBig;
    if (over(max_sequences_, now_.sequences + w.sequences) || over(max_tokens_, now_.tokens + w.tokens) ||
        over(max_logprobs_, now_.logprobs + w.logprobs) || over(max_values_, now_.values + w.values))
      return Verdict::kBusy;
    now_.sequences += w.sequences;
    now_.tokens += w.tokens;
    now_.logprobs += w.logprobs;
    now_.values += w.values;
  }
  slot = std::shared_ptr<void>(nullptr, [this, w](void*) {
    std::lock_guard lk(mu_);
    now_.sequences -= w.sequences;
    now_.tokens -= w.tokens;
    now_.logprobs -= w.logprobs;
    now_.values -= w.values;
  });
  return Verdict::kAdmitted;
}

Admission::Work Admission::in_flight() const {
  std::lock_guard lk(mu_);
  return now_;
}

}  // namespace dpserve
