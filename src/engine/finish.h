// Why a request ended on the ranks. The rules that decide it are in engine/finish_rules.h; this
// small header is what the wire format and the frontend need.
#pragma once

#include <cstdint>

namespace dpserve {

enum class Finish : uint8_t {
  kNone = 0,
  kStop,    // a complete structured output: its last token is part of the answer
  kLength,  // max_new_tokens reached, or the model's context is full
  kAbort,   // cancelled (client gone, /abort_request, drain deadline)
  kError,   // this request alone could not run (admission failed, evicted input_embeds, ...)
  // An EOS token or one of the request's stop_token_ids: that token is reported (ids, logprobs)
  // but, as in SGLang and vLLM, its text is not part of the answer.
  kStopToken,
};
inline constexpr Finish kLastFinish = Finish::kStopToken;

// The OpenAI / SGLang finish_reason: "stop", "length", "abort", "error"; "" for kNone.
inline const char* finish_reason(Finish f) {
  switch (f) {
    case Finish::kStop:
    case Finish::kStopToken: return "stop";
    case Finish::kLength: return "length";
    case Finish::kAbort: return "abort";
    case Finish::kError: return "error";
    case Finish::kNone: break;
  }
  return "";
}

}  // namespace dpserve
