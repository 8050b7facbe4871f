// How much generation work the HTTP frontend has taken on: sequences (prompts x n of every request in
// flight) and tokens (each sequence's prompt + max_tokens), bounded by --max-queued-requests and
// --max-queued-tokens. A request is admitted whole or not at all, so one request of 256 prompts x n
// counts as that many sequences, not as one request.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

namespace dpserve {

class Admission {
 public:
  // 0: no limit.
  Admission(int64_t max_sequences, int64_t max_tokens) : max_sequences_(max_sequences), max_tokens_(max_tokens) {}

  enum class Verdict { kAdmitted, kBusy, kTooBig };
  // kAdmitted reserves the work until `slot` (set then) is released with its last owner; kBusy: not
  // now (what is in flight leaves no room); kTooBig: never (more than a limit on its own).
  Verdict admit(int64_t sequences, int64_t tokens, std::shared_ptr<void>& slot);

  int64_t sequences() const;
  int64_t tokens() const;
  int64_t max_sequences() const { return max_sequences_; }
  int64_t max_tokens() const { return max_tokens_; }

 private:
  const int64_t max_sequences_, max_tokens_;
  mutable std::mutex mu_;
  int64_t sequences_ = 0, tokens_ = 0;
};

}  // namespace dpserve
