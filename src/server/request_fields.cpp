#include "server/request_fields.h"

#include <set>
#include <string>

#include <fmt/format.h>

#include "server/openai_error.h"

namespace dpserve {

namespace {

using Names = std::set<std::string, std::less<>>;

// Sampling extensions the OpenAI routes take, as SGLang and vLLM do.
const Names kExtensions = {"top_k", "min_p", "repetition_penalty", "ignore_eos", "skip_special_tokens",
                           "stop_token_ids", "regex", "ebnf", "sampling_seed"};

const Names kCompletions = {"model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
                            "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
                            "temperature", "top_p", "response_format"};
const Names kChat = {"model", "messages", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
                     "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream",
                     "stream_options", "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls",
                     "chat_template_kwargs", "separate_reasoning"};
// OpenAI fields that change nothing in the output: accepted and ignored.
const Names kIgnored = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"};
const Names kGenerate = {"text", "input_ids", "input_embeds", "sampling_params", "stream", "return_logprob",
                         "top_logprobs_num", "rid"};
const Names kSampling = {"max_new_tokens", "temperature", "top_p", "top_k", "min_p", "frequency_penalty",
                         "presence_penalty", "repetition_penalty", "stop", "stop_token_ids", "ignore_eos", "n",
                         "seed", "sampling_seed", "skip_special_tokens", "regex", "json_schema", "ebnf",
                         "logit_bias"};

// Refused with a reason, so the client learns what to change.
std::string why_refused(const std::string& k, BodyKind kind) {
  if (k == "suffix") return "'suffix' (text after the insertion point) is not supported";
  if (k == "functions" || k == "function_call")
    return fmt::format("'{}' (deprecated by OpenAI) is not supported; use 'tools' and 'tool_choice'", k);
  if (k == "audio" || k == "modalities") return fmt::format("'{}': only text output is supported", k);
  if (k == "prediction") return "'prediction' (predicted outputs) is not supported";
  if (k == "web_search_options") return "'web_search_options' is not supported";
  if (k == "reasoning_effort" || k == "verbosity") return fmt::format("'{}' is not supported with this model", k);
  if (kind == BodyKind::kSamplingParams)
    return fmt::format("'sampling_params.{}' is not a sampling parameter this server supports", k);
  return fmt::format("Unrecognized request argument supplied: {}", k);
}

}  // namespace

void check_fields(const nlohmann::json& body, BodyKind kind) {
  if (!body.is_object()) return;
  for (const auto& [k, v] : body.items()) {
    bool known = false;
    switch (kind) {
      case BodyKind::kCompletions:
        known = kCompletions.count(k) || kExtensions.count(k) || kIgnored.count(k);
        break;
      case BodyKind::kChat:
        known = kChat.count(k) || kExtensions.count(k) || kIgnored.count(k);
        break;
      case BodyKind::kGenerate:
        known = kGenerate.count(k) > 0;
        break;
      case BodyKind::kSamplingParams:
        known = kSampling.count(k) > 0;
        break;
    }
    // A modalities list asking for text only asks for what we do.
    if (k == "modalities" && v.is_array() && v == nlohmann::json::array({"text"})) known = true;
    if (!known) {
      const std::string param = kind == BodyKind::kSamplingParams ? "sampling_params." + k : k;
      throw ApiError(400, why_refused(k, kind), param, "invalid_request_error", "unsupported_parameter");
    }
  }
}

}  // namespace dpserve
