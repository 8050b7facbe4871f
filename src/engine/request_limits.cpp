#include "engine/request_limits.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace dpserve {

namespace {

using P = RequestParam;

struct FloatBound {
  P param;
  float lo, hi;
  bool lo_open;  // (lo, hi] instead of [lo, hi]
};

// Sampling values, as docs/api.md lists them.
constexpr FloatBound kFloatBounds[] = {
    {P::kTemperature, 0.0f, 2.0f, false},       {P::kTopP, 0.0f, 1.0f, true},
    {P::kMinP, 0.0f, 1.0f, false},              {P::kFrequencyPenalty, -2.0f, 2.0f, false},
    {P::kPresencePenalty, -2.0f, 2.0f, false},  {P::kRepetitionPenalty, 0.0f, 2.0f, true},
};

const FloatBound* float_bound(P p) {
  for (const auto& b : kFloatBounds)
    if (b.param == p) return &b;
  return nullptr;
}

constexpr int64_t kMaxTopK = std::numeric_limits<int32_t>::max();

std::string quoted(P p) { return fmt::format("'{}'", field_name(p)); }

}  // namespace

std::string field_name(RequestParam p) {
  switch (p) {
    case P::kPrompt: return "input_ids";
    case P::kInputEmbeds: return "input_embeds";
    case P::kMaxNewTokens: return "max_new_tokens";
    case P::kTemperature: return "temperature";
    case P::kTopP: return "top_p";
    case P::kTopK: return "top_k";
    case P::kMinP: return "min_p";
    case P::kFrequencyPenalty: return "frequency_penalty";
    case P::kPresencePenalty: return "presence_penalty";
    case P::kRepetitionPenalty: return "repetition_penalty";
    case P::kSeed: return "seed";
    case P::kStopTokenIds: return "stop_token_ids";
    case P::kTopLogprobs: return "top_logprobs";
    case P::kN: return "n";
  }
  return "?";
}

std::string RequestLimits::rule(RequestParam p) {
  if (const FloatBound* b = float_bound(p))
    return fmt::format("must be in {}{}, {}]", b->lo_open ? "(" : "[", double(b->lo), double(b->hi));
  switch (p) {
    case P::kTopK: return fmt::format("must be -1 (off) or in [1, {}]", kMaxTopK);
    case P::kTopLogprobs: return fmt::format("must be in [0, {}]", kMaxTopLogprobs);
    case P::kN: return fmt::format("must be in [1, {}]", kMaxN);
    case P::kMaxNewTokens: return "must be at least 1";
    case P::kSeed:
      return fmt::format("must be in [{}, {}]", std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max());
    default: return "is out of range";
  }
}

std::optional<std::string> RequestLimits::value_rule(RequestParam p, double v) {
  const FloatBound* b = float_bound(p);
  if (!b) return rule(p);
  const float f = float(v);  // what the engine samples with; NaN and overflow fail below
  const bool ok = (b->lo_open ? f > b->lo : f >= b->lo) && f <= b->hi;
  if (ok) return std::nullopt;
  return rule(p);
}

std::optional<std::string> RequestLimits::int_rule(RequestParam p, int64_t v) {
  bool ok = true;
  switch (p) {
    case P::kTopK: ok = v == -1 || (v >= 1 && v <= kMaxTopK); break;
    case P::kTopLogprobs: ok = v >= 0 && v <= kMaxTopLogprobs; break;
    case P::kN: ok = v >= 1 && v <= kMaxN; break;
    case P::kMaxNewTokens: ok = v >= 1; break;
    case P::kSeed: ok = true; break;
    default: ok = false; break;
  }
  if (ok) return std::nullopt;
  return rule(p);
}

std::optional<std::string> RequestLimits::token_rule(int64_t id) const {
  if (id >= 0 && id < vocab) return std::nullopt;
  return fmt::format("is outside the vocabulary [0, {})", vocab);
}

std::optional<LimitViolation> RequestLimits::check_prompt(std::span<const int32_t> ids, const ParamNamer& name) const {
  if (ids.empty()) return LimitViolation{P::kPrompt, fmt::format("{} is empty (no tokens)", name(P::kPrompt))};
  for (int32_t id : ids)
    if (auto r = token_rule(id))
      return LimitViolation{P::kPrompt, fmt::format("token id {} in {} {}", id, name(P::kPrompt), *r)};
  return check_prompt_length(int64_t(ids.size()), P::kPrompt);
}

std::optional<LimitViolation> RequestLimits::check_prompt_length(int64_t len, RequestParam param) const {
  if (len >= context_length)
    return LimitViolation{param, fmt::format("This model's maximum context length is {} tokens, but the prompt has {} "
                                             "tokens, leaving no room to generate",
                                             context_length, len)};
  if (kv_positions > 0 && len > kv_positions)
    return LimitViolation{param, fmt::format("The prompt has {} tokens, more than this server's KV cache holds for one "
                                             "sequence ({} positions; the server's --max-total-tokens or "
                                             "--mem-fraction sets it)",
                                             len, kv_positions)};
  return std::nullopt;
}

int64_t RequestLimits::room_after(int64_t prompt_len) const {
  int64_t room = context_length - prompt_len;
  // The last sampled token is never fed back: a sequence writes prompt + max_new - 1 positions.
  if (kv_positions > 0) room = std::min(room, kv_positions - prompt_len + 1);
  return room;
}

std::optional<LimitViolation> RequestLimits::check_max_new_tokens(int64_t prompt_len, int64_t max_new,
                                                                  const ParamNamer& name) const {
  if (auto r = int_rule(P::kMaxNewTokens, max_new))
    return LimitViolation{P::kMaxNewTokens, fmt::format("{} {}, got {}", name(P::kMaxNewTokens), *r, max_new)};
  if (max_new > context_length - prompt_len)
    return LimitViolation{
        P::kMaxNewTokens,
        fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
                    "prompt, {} for the completion). Lower {}",
                    context_length, fmt::to_string(__int128(prompt_len) + max_new), prompt_len, max_new,
                    name(P::kMaxNewTokens))};  // 128-bit: max_new may be near INT64_MAX
  if (kv_positions > 0 && max_new > kv_positions - prompt_len + 1)
    return LimitViolation{
        P::kMaxNewTokens,
        fmt::format("This server's KV cache holds {} positions for one sequence (its --max-total-tokens or "
                    "--mem-fraction), fewer than the context; {} prompt tokens leave room for {} more. Lower {}",
                    kv_positions, prompt_len, kv_positions - prompt_len + 1, name(P::kMaxNewTokens))};
  return std::nullopt;
}

std::optional<LimitViolation> RequestLimits::check_sampling(const SamplingParams& p, int32_t top_logprobs,
                                                            const ParamNamer& name) const {
  const std::pair<P, float> values[] = {
      {P::kTemperature, p.temperature},           {P::kTopP, p.top_p},
      {P::kMinP, p.min_p},                        {P::kFrequencyPenalty, p.frequency_penalty},
      {P::kPresencePenalty, p.presence_penalty},  {P::kRepetitionPenalty, p.repetition_penalty},
  };
  for (const auto& [param, v] : values)
    if (auto r = value_rule(param, v)) return LimitViolation{param, fmt::format("{} {}, got {}", name(param), *r, v)};
  if (auto r = int_rule(P::kTopK, p.top_k))
    return LimitViolation{P::kTopK, fmt::format("{} {}, got {}", name(P::kTopK), *r, p.top_k)};
  for (int32_t id : p.stop_token_ids)
    if (auto r = token_rule(id))
      return LimitViolation{P::kStopTokenIds, fmt::format("token id {} in {} {}", id, name(P::kStopTokenIds), *r)};
  if (auto r = int_rule(P::kTopLogprobs, top_logprobs))
    return LimitViolation{P::kTopLogprobs, fmt::format("{} {}, got {}", name(P::kTopLogprobs), *r, top_logprobs)};
  return std::nullopt;
}

std::optional<LimitViolation> RequestLimits::check(const Request& r, const ParamNamer& name) const {
  int64_t prompt_len = 0;
  if (r.input_embeds_rows > 0 || !r.input_embeds.empty()) {
    auto bad = [&](std::string why) { return LimitViolation{P::kInputEmbeds, std::move(why)}; };
    if (!r.input_ids.empty())
      return bad(fmt::format("give either {} or {}, not both", name(P::kPrompt), name(P::kInputEmbeds)));
    if (r.input_embeds_rows <= 0 || int64_t(r.input_embeds.size()) != r.input_embeds_rows * hidden)
      return bad(fmt::format("{} must be {} rows of {} values", name(P::kInputEmbeds), r.input_embeds_rows, hidden));
    for (float v : r.input_embeds)
      if (!std::isfinite(v)) return bad(fmt::format("{} contains a non-finite value", name(P::kInputEmbeds)));
    prompt_len = r.input_embeds_rows;
    if (auto v = check_prompt_length(prompt_len, P::kInputEmbeds)) return v;
  } else {
    if (auto v = check_prompt(r.input_ids, name)) return v;
    prompt_len = int64_t(r.input_ids.size());
  }
  if (auto v = check_sampling(r.params, r.top_logprobs, name)) return v;
  // The frontend maps adapter names to slots; a slot the ranks did not load would fail their step.
  if (r.lora < -1 || (r.lora >= 0 && !(lora && lora->usable(r.lora, r.lora_generation))))
    return LimitViolation{P::kPrompt, fmt::format("LoRA adapter slot {} is not loaded (or was unloaded since the "
                                                  "request named it)",
                                                  r.lora)};
  // The score ids are server-chosen (/v1/rerank's yes / no), so they are named as the prompt's.
  for (int32_t id : r.score_ids)
    if (auto why = token_rule(id))
      return LimitViolation{P::kPrompt, fmt::format("score token id {} {}", id, *why)};
  for (int32_t id : r.token_ids_logprob)
    if (auto why = token_rule(id))
      return LimitViolation{P::kPrompt, fmt::format("token_ids_logprob id {} {}", id, *why)};
  if (auto v = check_max_new_tokens(prompt_len, r.params.max_new_tokens, name)) return v;
  if (r.params.min_new_tokens < 0 || r.params.min_new_tokens > r.params.max_new_tokens)
    return LimitViolation{P::kMaxNewTokens, fmt::format("min_new_tokens {} must be in [0, {} {}]",
                                                        r.params.min_new_tokens, name(P::kMaxNewTokens),
                                                        r.params.max_new_tokens)};
  return std::nullopt;
}

const char* to_string(Pooling p) {
  switch (p) {
    case Pooling::kLast: return "last";
    case Pooling::kMean: return "mean";
    case Pooling::kCls: return "cls";
    case Pooling::kNone: break;
  }
  return "none";
}

std::optional<LimitViolation> RequestLimits::check(const Request& r) const { return check(r, quoted); }

}  // namespace dpserve
