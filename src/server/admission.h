// How much generation work the HTTP frontend has taken on: sequences (prompts x n of every request in
// flight), tokens (each sequence's prompt + max_tokens) and logprob entries (what the replies will
// carry: each reported position with its alternatives), bounded by --max-queued-requests,
// --max-queued-tokens and --max-queued-logprobs; and the embedding values the /v1/embeddings replies
// in flight hold (each input's vector, kept as float32s until written), bounded by
// --max-queued-embedding-values. A request is admitted whole or not at all, so one request of 256
// prompts x n counts as that many sequences, not as one request.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

namespace dpserve {

class Admission {
 public:
  // 0: no limit.
  Admission(int64_t max_sequences, int64_t max_tokens, int64_t max_logprobs = 0, int64_t max_values = 0)
      : max_sequences_(max_sequences), max_tokens_(max_tokens), max_logprobs_(max_logprobs), max_values_(max_values) {}

  struct Work {
    int64_t sequences = 0, tokens = 0, logprobs = 0, values = 0;
  };

  enum class Verdict { kAdmitted, kBusy, kTooBig };
  // kAdmitted reserves the work until `slot` (set then) is released with its last owner; kBusy: not
  // now (what is in flight leaves no room); kTooBig: never (more than a limit on its own).
  Verdict admit(const Work& w, std::shared_ptr<void>& slot);

  Work in_flight() const;
  int64_t sequences() const { return in_flight().sequences; }
  int64_t tokens() const { return in_flight().tokens; }
  int64_t max_sequences() const { return max_sequences_; }
  int64_t max_tokens() const { return max_tokens_; }
  int64_t max_logprobs() const { return max_logprobs_; }
  int64_t max_values() const { return max_values_; }

 private:
  const int64_t max_sequences_, max_tokens_, max_logprobs_, max_values_;
  mutable std::mutex mu_;
  Work now_;
};

}  // namespace dpserve
