// When a request ends on its own: the one place that decides it, for `serve`, `generate` and
// `bench offline` alike (the Scheduler applies it when it commits a sampled token). Cancels and
// per-request errors end requests from outside (the control message, admission).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/finish.h"
#include "engine/request_state.h"

namespace dpserve {

struct FinishRules {
  std::vector<int32_t> eos_ids;  // the model's and the tokenizer's end-of-sequence ids

  // Called with the request's newest token already appended to st.tokens:
  //  kStop   the token is an EOS id (unless params.ignore_eos) or one of params.stop_token_ids,
  //          or the output is complete under the request's constraint (nothing may follow);
  //  kLength the request has its max_new tokens (max_new_tokens, or the context is full);
  //  kNone   it goes on.
  Finish after_token(const RequestState& st) const;
};

}  // namespace dpserve
