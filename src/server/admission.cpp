#include "server/admission.h"

namespace dpserve {

Admission::Verdict Admission::admit(int64_t sequences, int64_t tokens, std::shared_ptr<void>& slot) {
  {
    std::lock_guard lk(mu_);
    if ((max_sequences_ > 0 && sequences > max_sequences_) || (max_tokens_ > 0 && tokens > max_tokens_))
      return Verdict::kTooBig;
    if ((max_sequences_ > 0 && sequences_ + sequences > max_sequences_) ||
        (max_tokens_ > 0 && tokens_ + tokens > max_tokens_))
      return Verdict::kBusy;
    sequences_ += sequences;
    tokens_ += tokens;
  }
  slot = std::shared_ptr<void>(nullptr, [this, sequences, tokens](void*) {
    std::lock_guard lk(mu_);
    sequences_ -= sequences;
    tokens_ -= tokens;
  });
  return Verdict::kAdmitted;
}

int64_t Admission::sequences() const {
  std::lock_guard lk(mu_);
  return sequences_;
}

int64_t Admission::tokens() const {
  std::lock_guard lk(mu_);
  return tokens_;
}

}  // namespace dpserve
