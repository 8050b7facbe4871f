// Value types crossing the frontend <-> engine boundary: what a client asks for
// and what the engine streams back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/sampling_params.h"
#include "engine/think_budget.h"
#include "vision/image_input.h"

namespace dpserve {

namespace constrain {
class Automaton;
}

// OpenAI's logit_bias: added to a token's logit before sampling (-100 all but bans it).
struct LogitBias {
  int32_t token = 0;
  float bias = 0;
};

// A pooling head (--is-embedding): the request runs its prompt only and answers with one vector of
// hidden-state width, taken after the model's final norm: the last prompt row, the mean of every
// prompt row, or the first row (CLS). kNone: an ordinary generation request.
enum class Pooling : uint8_t { kNone, kLast, kMean, kCls };
const char* to_string(Pooling p);  // "none" | "last" | "mean" | "cls"

struct Request {
  std::vector<int32_t> input_ids;
  // Alternative to input_ids (SGLang /generate): rows x hidden floats, row-major.
  std::vector<float> input_embeds;
  int64_t input_embeds_rows = 0;
  SamplingParams params;
  int32_t top_logprobs = 0;     // alternatives per position to report (0 = none)
  bool return_logprob = false;  // report the chosen token's logprob
  // Also report every prompt token's logprob (positions 1.., with top_logprobs alternatives each):
  // completions' echo + logprobs. Costs logits for every prompt row, so only such requests pay.
  bool prompt_logprobs = false;
  std::string rid;              // client-chosen id, for logs and /abort_request
  // DP attention: the group to run in (-1: the router picks). Set by the frontend for the later
  // choices of an n > 1 request, so they find the first choice's prompt in that group's prefix cache.
  // Rank 0 reads it when routing; it does not travel to the ranks.
  int32_t dp_group = -1;
  // max_tokens 0 (echo / prompt scoring): the engine still samples one token, which the frontend drops;
  // it is then no generated token in the stats (SGLang's generation_tokens_total counts 0 for such a
  // request, and usage says 0). Rank 0 reads it; it does not travel to the ranks.
  bool prompt_only = false;
  // Structured output: the automaton the output must follow (compiled once on rank 0, cached by
  // the constraint's text, carried to the ranks in the control message); null when free.
  std::shared_ptr<const constrain::Automaton> constraint;
  std::vector<LogitBias> logit_bias;
  // vLLM's allowed_token_ids: only these ids may be sampled (every other logit is -inf, EOS too);
  // empty: no such limit.
  std::vector<int32_t> allowed_token_ids;
  // vLLM's bad_words, tokenized (every sequence non-empty): at each output position, a sequence's
  // last id is banned when the output so far (prompt excluded) ends with the ids before it.
  std::vector<std::vector<int32_t>> bad_words;
  // A cap on the reasoning block's length (inactive: none); engine/think_budget.h.
  ThinkBudgetSpec think_budget;
  // OpenAI's predicted output (chat 'prediction'), tokenized: what the output is expected to be, so
  // decode steps verify drafts taken from it (engine/speculative.h: prediction_draft). The output is
  // the same with or without it; empty: none.
  std::vector<int32_t> prediction;
  // Images, materialized on rank 0 (decoded, RGB, resized), in prompt order: image k fills the k-th
  // run of the model's image_pad token in input_ids (the frontend expanded each run to its length).
  std::vector<ImageInput> images;
  // Embeddings: the pooled hidden state is reported with the request's (only) token (Response::embedding).
  Pooling pooling = Pooling::kNone;
  // Scoring (/v1/rerank, /v1/score): the raw logits of these ids at the last prompt row, then that
  // row's log-sum-exp, reported with the request's first token (Response::scores), before any bias
  // or mask.
  std::vector<int32_t> score_ids;
  // SGLang's token_ids_logprob: at every output position, the logprobs of exactly these ids, in this
  // order, from the distribution top_logprobs describes (TokenOut::id_logprobs).
  std::vector<int32_t> token_ids_logprob;
  // LoRA: the adapter slot the request runs with (Model::add_lora's, in --lora-paths order), -1 for
  // the base model. Its KV pages are cached apart from other adapters' (kv/radix_cache.h).
  int32_t lora = -1;
  // Priority scheduling (SchedulerConfig::priority_scheduling): SGLang's and vLLM's `priority`;
  // 0 when the server schedules without it.
  int32_t priority = 0;
  // vLLM's cache_salt: the prefix cache shares this request's pages only with requests of the same
  // salt (kv/radix_cache.h); empty: the shared cache.
  std::string cache_salt;
  // Rank 0 only (not sent): the LoraRegistry generation `lora` was resolved in (0: any), so a
  // request resolved just before its adapter was unloaded cannot run a later one in the same slot.
  uint64_t lora_generation = 0;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};

struct TokenOut {
  int32_t token = 0;
  float logprob = 0;                // valid when return_logprob
  std::vector<TokenLogprob> top;    // top_logprobs alternatives, most likely first
  std::vector<float> id_logprobs;   // Request::token_ids_logprob's ids, in their order
  // Prompt positions only (Response::prompt): the token's rank in the vocabulary, 1 + the ids whose
  // logit is higher (vLLM's, ties counted against it: the ids whose logit is at least as high).
  int32_t rank = 0;
};

// One delivery on a request's stream: zero or more new tokens, and whether it ended.
struct Response {
  uint64_t id = 0;
  std::vector<TokenOut> tokens;
  // prompt_logprobs: the next prompt positions' entries (the token at that position, its logprob
  // and alternatives), continuing where the last delivery stopped; the first is position 1.
  std::vector<TokenOut> prompt;
  bool finished = false;
  std::string finish_reason;  // "stop", "length", "abort", "error" when finished
  // "stop" because the last token is an EOS or one of the request's stop_token_ids (SGLang's
  // finish_reason.matched); -1 otherwise. Its text is not part of the answer.
  int32_t matched_token = -1;
  std::string error;          // for "error": what went wrong (with this request, or with the engine)
  // "error" because the engine failed, not this request: a rank fault, the step watchdog, the step
  // loop stopping. The stream was cut mid-generation; the server ends it with a final error event
  // (a 5xx error, not a 400).
  bool engine_fault = false;
  // "error" because the engine was stopping (draining for a shutdown) when the request came: it
  // never ran, and may be sent again elsewhere or later (a 503, not a 400).
  bool engine_unavailable = false;
  // Request::pooling: the pooled hidden state [hidden] (not normalised); Request::score_ids: their logits.
  std::vector<float> embedding;
  std::vector<float> scores;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served from the prefix cache
  int64_t completion_tokens = 0;
  int32_t dp_rank = 0;        // DP group that served it
  // Speculative decoding in the step of this delivery: drafted tokens verified, and matched.
  int64_t spec_drafted = 0;
  int64_t spec_accepted = 0;
  // Of those, the drafts taken from the request's predicted output, and matched (the rest were the
  // draft model's or NGRAM's).
  int64_t predicted_drafted = 0;
  int64_t predicted_accepted = 0;
};

}  // namespace dpserve
