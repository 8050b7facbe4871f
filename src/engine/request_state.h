// One request's life on the ranks of its DP group, from admission to its last token: what the
// control message carried, the tokens so far, its output budget and its sampler's random stream.
// The Scheduler owns it (engine/scheduler.h) and the step samples into it; every rank of the group
// builds it from the same message bytes, so it is identical on all of them. Per-request state that
// must advance in lockstep (e.g. a structured-output automaton) belongs here.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "constrain/matcher.h"

#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "engine/think_budget.h"

namespace dpserve {

struct RequestState {
  // `prompt` is what the KV cache sees: req.input_ids, or one placeholder id per input_embeds row.
  // `max_new`: the output budget, max_new_tokens already clipped to the model's context.
  RequestState(uint64_t id, Request req, std::vector<int32_t> prompt, int64_t max_new);

  uint64_t id = 0;
  Request req;                  // as received (read-only on the ranks)
  std::vector<int32_t> tokens;  // prompt + generated so far (the input of a recompute after preemption)
  int64_t prompt_len = 0;
  int64_t max_new = 0;
  int64_t cached = 0;           // prompt tokens served from the prefix cache at first admission
  // prompt_logprobs: the next prompt position whose logprob is still to be reported (position 0 has
  // none). Advanced by Scheduler::commit, so identical on every rank of the group.
  int64_t prompt_lp_next = 1;
  Sampler sampler;              // seeded by params.seed, else by the id (same stream on every rank)
  // The structured-output state, advanced by every sampled token on every rank of the group (null
  // without a constraint).
  std::unique_ptr<constrain::Matcher> matcher;
  // req.think_budget's progress, advanced by every output token like the matcher.
  ThinkBudget think;
  // Speculative decoding: this request's draft length and acceptance so far (advanced by
  // Scheduler::commit, so identical on every rank of the group).
  DraftPolicy spec;
  // Predicted outputs: where in the prediction the last draft began and the output's length then,
  // so the next draft after an edit looks for the output near where it should be by now.
  int64_t prediction_at = -1;
  int64_t prediction_out = 0;

  int64_t generated() const { return int64_t(tokens.size()) - prompt_len; }
  bool has_embeds() const { return req.input_embeds_rows > 0; }
  // The embedding given for prompt position `pos`, or null when that position is a token.
  const float* embed_row(int64_t pos, int64_t hidden) const {
    return pos < req.input_embeds_rows ? &req.input_embeds[size_t(pos * hidden)] : nullptr;
  }
  // Images (req.images, vision-language models), set at admission:
  bool has_images() const { return !req.images.empty(); }
  std::vector<int32_t> mrope_pos;   // M-RoPE (temporal, height, width) of each prompt position
  int64_t mrope_delta = 0;          // position - index of every later token (model/mrope.h)
  std::vector<int32_t> image_row;   // prompt position -> row of image_embeds, -1 for a text token
  // The vision tower's output for every image (rows x hidden, prompt order): computed when a prefill
  // chunk first reaches an image row, dropped once the prompt is prefilled, recomputed if a
  // preemption restarts the prefill.
  std::vector<float> image_embeds;
  // The M-RoPE position `axis` (0..2) of any position of the request (prompt or generated).
  int32_t mrope_at(int64_t pos, int axis) const {
    return pos < prompt_len ? mrope_pos[size_t(3 * pos + axis)] : int32_t(pos + mrope_delta);
  }

  // Pooling (req.pooling): the sum of the pooled rows so far, and the next prompt position to add
  // (rows recomputed after a preemption are not added twice). Reported when the prompt is done.
  std::vector<double> pool_sum;
  int64_t pool_next = 0;
  // Mean and CLS pooling read rows the prefix cache would skip.
  bool pools_every_row() const { return req.pooling == Pooling::kMean || req.pooling == Pooling::kCls; }

  bool wants_logprobs() const { return req.return_logprob || req.top_logprobs > 0 || !req.token_ids_logprob.empty(); }
  // Some prompt positions still need their logits (so their KV cannot come from the prefix cache).
  bool needs_prompt_logprobs() const { return req.prompt_logprobs && prompt_lp_next < prompt_len; }
  // Prompt rows must be computed, not taken from the prefix cache: prompt logprobs still owed, or a
  // pooling head that reads every row (its pages still go into the cache when it ends).
  bool skips_prefix_cache() const { return needs_prompt_logprobs() || pools_every_row(); }
};

}  // namespace dpserve
