// Parsed JSON bodies of /v1/completions, /v1/chat/completions and /generate -> validated generation specs.
// Every problem becomes an ApiError (400/404) naming the parameter, before anything reaches the engine.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/request.h"
#include "engine/request_limits.h"
#include "server/chat_output.h"
#include "server/fim_prompt.h"
#include "server/image_source.h"
#include "server/openai_error.h"
#include "server/sampling_defaults.h"
#include "server/stop_regex.h"
#include "server/think_budget_config.h"

namespace dpserve {

class Tokenizer;
class ChatTemplate;
namespace constrain {
class CompileCache;
}

// What the parser needs to know about the served model.
struct ParseContext {
  const Tokenizer* tok = nullptr;
  // The engine's limits, with the vocabulary narrowed to what the tokenizer can decode; hidden 0:
  // input_embeds widths are left to the engine.
  RequestLimits limits;
  std::string served_model_name;
  std::shared_ptr<const ChatTemplate> chat_template;  // from --chat-template or the tokenizer; null: none
  constrain::CompileCache* constraints = nullptr;     // structured outputs, compiled once per text
  ToolCallParser tool_parser = ToolCallParser::kNone;        // --tool-call-parser
  ReasoningParser reasoning_parser = ReasoningParser::kNone;  // --reasoning-parser
  ThinkBudgetConfig think;  // the reasoning block's tags and --reasoning-budget (under --reasoning-parser)
  FimFormat fim;            // the model's fill-in-the-middle markers (completions' suffix); none: a 400
  // The model's image tokens and preprocessing, and the image flags; null: a model without images.
  const ImageOptions* images = nullptr;
  bool skip_tokenizer = false;  // --skip-tokenizer-init: no text in, no text out
  // The model's sampling defaults and --preferred-sampling-params over them, under a completion / chat /
  // responses request's own fields; null: OpenAI's.
  const SamplingDefaults* sampling_defaults = nullptr;
  // --preferred-sampling-params, under a /generate request's own sampling_params; null: SGLang's defaults.
  const SamplingDefaults* preferred_sampling = nullptr;
  int32_t dp_size = 1;  // DP groups: the range of a request's data_parallel_rank
  // --return-tokens-as-token-ids: completions' and chat's logprobs name tokens "token_id:<id>" unless
  // a request's return_tokens_as_token_ids says otherwise.
  bool tokens_as_ids = false;
  // --enable-priority-scheduling: requests may give a non-zero `priority` (else it is a 400).
  bool priority_scheduling = false;
  // --trust-request-chat-template (vLLM): chat and /tokenize may bring their own `chat_template`.
  bool trust_request_chat_template = false;
  // LoRA adapters (--lora-paths and run-time loads) are limits.lora: requests name one with
  // `lora_path` or with `model` (the adapter's name, vLLM; "<served model>:<adapter>", SGLang).
};

// `ctx` without the context's bounds (length and KV pool), for token counts (Anthropic's
// count_tokens, OpenAI's input_tokens): a conversation past the context is counted, since its count is
// what a client needs to trim it.
ParseContext without_length_bounds(const ParseContext& ctx);

// vLLM's truncate_prompt_tokens `k` checked (-1, or 1 up to the context length; else a 400 naming
// `param`), as the number of tokens a prompt keeps (-1: the context length).
int64_t truncate_prompt_tokens_value(int64_t k, const RequestLimits& limits, const std::string& param);

// The 400 for text where a server without a tokenizer needs token ids.
[[noreturn]] void refuse_text_without_tokenizer(const std::string& param, const std::string& instead);

// OpenAI's `metadata`: at most 16 pairs, keys of at most 64 characters, string values of at most 512.
// It is echoed and stored (Responses), so its size is the client's to choose only within these.
template <class Json>
void check_metadata(const Json& m, const std::string& param = "metadata") {
  auto chars = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  if (!m.is_object()) bad_param(param, fmt::format("'{}' must be an object of strings", param));
  if (m.size() > 16) bad_param(param, fmt::format("'{}' has {} keys; at most 16 are allowed", param, m.size()));
  for (const auto& [k, v] : m.items()) {
    if (chars(k) > 64) bad_param(param, fmt::format("'{}' keys are at most 64 characters long", param));
    if (!v.is_string()) bad_param(param + "." + k, fmt::format("'{}.{}' must be a string", param, k));
    if (chars(v.template get_ref<const std::string&>()) > 512)
      bad_param(param + "." + k, fmt::format("'{}.{}' is longer than 512 characters", param, k));
  }
}

// One HTTP request's generation work: prompts x n choices sharing one set of parameters.
struct GenSpec {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;  // as the client sent them (echo); "" for token prompts
  std::vector<float> input_embeds;        // /generate input_embeds (then prompts is empty)
  int64_t input_embeds_rows = 0;
  // Materialized images, in prompt order (one prompt only); each prompt's image_pad tokens are
  // already expanded to the images' lengths. Every choice's Request carries them.
  std::vector<ImageInput> images;
  MaterializeTimes image_times;           // decoding and resizing them, here on rank 0
  Request base;                           // sampling params and logprob settings for each choice
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;             // stream_options.include_usage
  // stream_options.continuous_usage_stats (vLLM): with include_usage, every chunk carries the usage so far.
  bool continuous_usage = false;
  bool echo = false;                      // completions: prepend the prompt text
  bool logprobs = false;                  // report logprobs in the response
  bool priority_given = false;            // the request set `priority` (base.priority), 0 included
  // Completions / chat: the alternatives each output position reports (base.top_logprobs may be
  // more: prompt_logprobs asked for more, and the engine computes one count for both).
  int32_t shown_top_logprobs = 0;
  // vLLM's prompt_logprobs: every prompt position's logprob, rank and this many alternatives, as the
  // choice's (completions) or the response's (chat) `prompt_logprobs`; unset: not asked.
  std::optional<int32_t> prompt_logprobs;
  bool tokens_as_ids = false;             // vLLM's return_tokens_as_token_ids (ParseContext::tokens_as_ids)
  // vLLM's return_token_ids: chat's prompt_token_ids beside the choices (completions': in each
  // choice), and each choice's token_ids (streamed: the ids each chunk adds).
  bool return_token_ids = false;
  // completions' max_tokens 0 (with echo: score the prompt): the engine runs the prompt and samples
  // one token, which is dropped; the choice is the prompt alone, finish_reason "length".
  bool prompt_only = false;
  bool skip_special_tokens = true;
  // Keep the text of the stop string or EOS / stop token that ended it (SGLang's no_stop_trim, vLLM's
  // include_stop_str_in_output)
  bool no_stop_trim = false;
  // Chat's echo (vLLM): the text the answer's content starts with: the final (assistant) message's,
  // when the prompt continues it rather than opening a new turn.
  std::string chat_echo;
  // /generate with return_logprob: meta_info.input_token_logprobs from this prompt position (SGLang's
  // logprob_start_len; -1: only the last prompt token, with no logprob), per prompt; and whether
  // logprob entries carry the token's text.
  int64_t logprob_start_len = -1;
  // /generate's token_ids_logprob, per prompt (empty: none): meta_info.output_token_ids_logprobs.
  std::vector<std::vector<int32_t>> token_ids_logprob;
  bool return_text_in_logprobs = false;
  std::vector<std::string> stop;
  // /generate's sampling_params.stop_regex (null: none); the finish names the pattern that matched.
  std::shared_ptr<const StopRegex> stop_regex;
  std::string model;                      // as the request named it (the served model or an adapter)
  // LoRA adapter slots (Request::lora), one per prompt, or one for every prompt; empty: the base model.
  std::vector<int32_t> loras;
  std::vector<uint64_t> lora_generations;  // parallel to loras: LoraRegistry::Adapter::generation
  std::vector<std::string> rids;          // /generate: client ids, one per prompt (may be empty)
  bool batched = false;                   // /generate got a list of prompts: answer with a list
  // Chat output parsing: the tools whose calls are picked out of the text (empty: none), and where
  // the prompt leaves the reasoning block (opened: the output starts inside it; closed: no thinking).
  std::vector<std::string> tool_names;
  std::vector<nlohmann::ordered_json> tool_parameters;  // their schemas, under --tool-call-parser qwen3_coder
  bool parallel_tool_calls = true;        // false: the parser keeps a turn's first call only
  bool log_requests = false;              // --log-requests: each choice's prompt and output go to the log
  bool separate_reasoning = true;
  bool reasoning_open = false;
  bool reasoning_closed = false;
};

// Each route reads its body with a table of the fields it knows (name -> how to read it): a field
// not in the table is a 400 naming it; one of OpenAI's that this server does not implement is a 400
// unless it has its default value. Adding a field is adding a table entry. `raw_body`: the body as
// sent, for what keeps the client's key order (JSON Schemas).
GenSpec parse_completion_request(const nlohmann::json& body, const ParseContext& ctx, std::string_view raw_body = {});
GenSpec parse_chat_request(const nlohmann::json& body, const ParseContext& ctx, std::string_view raw_body = {});
GenSpec parse_generate_request(const nlohmann::json& body, const ParseContext& ctx, std::string_view raw_body = {});

// Whether the route's table has a top-level field of this name (the JSON parser refuses others
// as soon as it meets them, before their value is parsed).
bool is_completion_field(std::string_view name);
bool is_chat_field(std::string_view name);
bool is_generate_field(std::string_view name);
// The top-level fields of each route that may hold token-id arrays, parsed straight into int32
// (JsonLimits::id_field): completions' "prompt", /generate's "input_ids".
bool is_completion_id_field(std::string_view name);
bool is_generate_id_field(std::string_view name);

// An image a request names: where it comes from (a URL or base64) and the parameter it sits in.
struct ImageRef {
  std::string source;
  std::string param;
};

// The largest template a request may bring (vLLM's chat_template field).
inline constexpr size_t kMaxRequestChatTemplateBytes = size_t(256) << 10;

// The chat prompt text for `messages` (validated), rendered with the context's template (or the
// request's own `chat_template`, where the server trusts clients with it). Image
// parts reach the template as {"type": "image"} entries of a content list (as Hugging Face's
// processors pass them) and are appended to `images` in order; null `images`: image parts are a 400.
// Objects reach the template in `raw_body`'s key order (the body as sent; empty: `body`'s order).
// `generation_prompt`: set to whether the template was asked to open a new assistant turn.
std::string render_chat_prompt(const nlohmann::json& body, const ParseContext& ctx,
                               std::vector<ImageRef>* images = nullptr, std::string_view raw_body = {},
                               bool* generation_prompt = nullptr);

}  // namespace dpserve
