// The bounds of a generation request, written once. Every entry point checks a request against them
// before it runs: the HTTP routes (naming the JSON field), `dpserve generate` (naming the flag) and
// DpEngine::enqueue (the guard that keeps a bad request off the ranks). docs/api.md lists the same numbers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "engine/lora_registry.h"
#include "engine/request.h"

namespace dpserve {

// What a bound is about. Each entry point names it its own way: "max_tokens" or
// "max_completion_tokens" over HTTP, "--max-new-tokens" on the command line.
enum class RequestParam {
  kPrompt,             // input_ids
  kInputEmbeds,
  kMaxNewTokens,
  kTemperature,
  kTopP,
  kTopK,
  kMinP,
  kFrequencyPenalty,
  kPresencePenalty,
  kRepetitionPenalty,
  kSeed,
  kStopTokenIds,
  kTopLogprobs,
  kN,                  // choices per prompt: a frontend notion, bounded here with the rest
};

// The parameter's name as the caller shows it in messages (e.g. "'temperature'" or "--temperature").
using ParamNamer = std::function<std::string(RequestParam)>;
// 'max_new_tokens', 'temperature', ...: the names of Request's own fields.
std::string field_name(RequestParam p);

struct LimitViolation {
  RequestParam param;
  std::string message;  // names the parameter the caller's way
};

struct RequestLimits {
  int64_t vocab = 0;           // token ids in [0, vocab)
  int64_t context_length = 0;  // prompt + max_new_tokens fit in it
  // KV positions one sequence may hold: a DP group's whole pool (0: no bound but the context). A
  // pool smaller than the context (a long-context model on a small machine) bounds requests too.
  int64_t kv_positions = 0;
  int64_t hidden = 0;          // input_embeds row width
  // The adapters Request::lora may name (-1, the base model, always): a slot loaded now, of the
  // request's lora_generation (null: none).
  std::shared_ptr<const LoraRegistry> lora = nullptr;

  static constexpr int32_t kMaxTopLogprobs = 20;  // alternatives per position
  static constexpr int32_t kMaxN = 64;            // choices per prompt (HTTP `n`)
  static constexpr int32_t kMaxPrompts = 256;     // prompts in one batched request
  static constexpr int32_t kMaxChoices = 256;     // prompts x n in one request
  static constexpr size_t kMaxCacheSaltBytes = 256;  // vLLM's cache_salt (a 256-bit secret is 43 base64 chars)
  // vLLM's bounds on bad_words once tokenized (its MAX_NUM_BAD_WORDS, MAX_BAD_WORDS_TOTAL_TOKENS): the
  // id sequences (one or two per word), and their ids in all.
  static constexpr int32_t kMaxBadWordSequences = 128;
  static constexpr int32_t kMaxBadWordTokens = 1024;

  // The rule `v` breaks as the value of floating-point `p` ("must be in [0, 2]"), or nullopt. The
  // value is checked as the float the engine will use: 1e-300 is 0 there, so it is not in (0, 1].
  static std::optional<std::string> value_rule(RequestParam p, double v);
  // max_new_tokens when the request gives none and asks for "the rest": what fits the context and
  // the KV pool after a prompt of `prompt_len` (at least 1 for a prompt check_prompt_length accepts).
  int64_t room_after(int64_t prompt_len) const;
  // The same for integer parameters (top_k, top_logprobs, n, seed; max_new_tokens only its lower bound).
  static std::optional<std::string> int_rule(RequestParam p, int64_t v);
  // The rule of `p` as text, for a value that is not even a 64-bit integer.
  static std::string rule(RequestParam p);
  // The rule a token id breaks ("is outside the vocabulary [0, 512)"), or nullopt.
  std::optional<std::string> token_rule(int64_t id) const;

  // Non-empty, every id in the vocabulary, shorter than the context.
  std::optional<LimitViolation> check_prompt(std::span<const int32_t> ids, const ParamNamer& name) const;
  // Shorter than the context, leaving room to generate, and within the KV pool (`param` is kPrompt or
  // kInputEmbeds).
  std::optional<LimitViolation> check_prompt_length(int64_t len, RequestParam param) const;
  // At least 1, and prompt_len + max_new fits the context and the KV pool.
  std::optional<LimitViolation> check_max_new_tokens(int64_t prompt_len, int64_t max_new,
                                                     const ParamNamer& name) const;
  // Every sampling value and the stop token ids; top_logprobs.
  std::optional<LimitViolation> check_sampling(const SamplingParams& p, int32_t top_logprobs,
                                               const ParamNamer& name) const;
  // All of the above for one request (its prompt, or its input_embeds).
  std::optional<LimitViolation> check(const Request& r, const ParamNamer& name) const;
  // The same, naming parameters by Request's field names.
  std::optional<LimitViolation> check(const Request& r) const;
};

}  // namespace dpserve
