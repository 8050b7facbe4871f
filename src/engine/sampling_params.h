// Per-request sampling settings (OpenAI / SGLang semantics); their bounds are in request_limits.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dpserve {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = -1;               // <= 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off; divides positive logits of seen tokens, multiplies negative
  float frequency_penalty = 0.0f;   // minus count * penalty, over generated tokens
  float presence_penalty = 0.0f;    // minus penalty if generated at least once
  std::optional<uint64_t> seed;     // reproducible sampling when set
  int64_t max_new_tokens = 128;
  // SGLang's min_new_tokens (vLLM's min_tokens): until this many tokens are out, the EOS ids and
  // stop_token_ids are masked as a structured output masks tokens (stop strings still match).
  int64_t min_new_tokens = 0;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
};

}  // namespace dpserve
