#include "server/request_parse.h"

#include <cmath>
#include <fmt/format.h>

#include "core/check.h"
#include "server/openai_error.h"
#include "tokenizer/tokenizer.h"

#include "tokenizer/chat_template.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

// A present, non-null field, or nullptr (clients send null for "use the default").
const json* field(const json& b, const char* name) {
  auto it = b.find(name);
  if (it == b.end() || it->is_null()) return nullptr;
  return &*it;
}

// A number checked against its bound in RequestLimits.
std::optional<double> opt_number(const json& b, const char* name, RequestParam p) {
  const json* v = field(b, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_param(name, fmt::format("'{}' must be a number, got {}", name, v->type_name()));
  double x = v->get<double>();
  if (auto rule = RequestLimits::value_rule(p, x)) bad_param(name, fmt::format("'{}' {}, got {}", name, *rule, x));
  return x;
}

int64_t as_int(const json& v, const std::string& name) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) return int64_t(d);
  }
  bad_param(name, fmt::format("'{}' must be an integer, got {}", name, v.is_number() ? v.dump() : v.type_name()));
}

// An integer; `p`, when given, names its bound in RequestLimits.
std::optional<int64_t> opt_int(const json& b, const char* name, std::optional<RequestParam> p = std::nullopt) {
  const json* v = field(b, name);
  if (!v) return std::nullopt;
  int64_t x = as_int(*v, name);
  if (p)
    if (auto rule = RequestLimits::int_rule(*p, x)) bad_param(name, fmt::format("'{}' {}, got {}", name, *rule, x));
  return x;
}

std::optional<bool> opt_bool(const json& b, const char* name) {
  const json* v = field(b, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_param(name, fmt::format("'{}' must be a boolean, got {}", name, v->type_name()));
  return v->get<bool>();
}

std::vector<std::string> parse_stop(const json& b) {
  const json* v = field(b, "stop");
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > 4) bad_param("stop", fmt::format("'stop' takes at most 4 strings, got {}", v->size()));
    for (const auto& s : *v) {
      if (!s.is_string()) bad_param("stop", "'stop' must be a string or an array of strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    bad_param("stop", "'stop' must be a string or an array of strings");
  }
  for (const auto& s : out)
    if (s.empty()) bad_param("stop", "'stop' strings must not be empty");
  return out;
}

std::vector<int32_t> parse_ids(const json& arr, const std::string& name, const ParseContext& ctx) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const auto& v : arr) {
    if (!v.is_number_integer()) bad_param(name, fmt::format("'{}' token ids must be integers", name));
    int64_t id = v.get<int64_t>();
    if (auto rule = ctx.limits.token_rule(id)) bad_param(name, fmt::format("token id {} in '{}' {}", id, name, *rule));
    ids.push_back(int32_t(id));
  }
  return ids;
}

// The sampling fields shared by the OpenAI endpoints and SGLang's sampling_params.
void parse_sampling(const json& b, SamplingParams& p, const ParseContext& ctx) {
  using P = RequestParam;
  if (auto v = opt_number(b, "temperature", P::kTemperature)) p.temperature = float(*v);
  if (auto v = opt_number(b, "top_p", P::kTopP)) p.top_p = float(*v);
  if (auto v = opt_int(b, "top_k", P::kTopK)) p.top_k = int32_t(*v);
  if (auto v = opt_number(b, "min_p", P::kMinP)) p.min_p = float(*v);
  if (auto v = opt_number(b, "frequency_penalty", P::kFrequencyPenalty)) p.frequency_penalty = float(*v);
  if (auto v = opt_number(b, "presence_penalty", P::kPresencePenalty)) p.presence_penalty = float(*v);
  if (auto v = opt_number(b, "repetition_penalty", P::kRepetitionPenalty)) p.repetition_penalty = float(*v);
  for (const char* name : {"seed", "sampling_seed"}) {
    if (const json* v = field(b, name)) p.seed = uint64_t(as_int(*v, name));
  }
  if (auto v = opt_bool(b, "ignore_eos")) p.ignore_eos = *v;
  if (const json* v = field(b, "stop_token_ids")) {
    if (!v->is_array()) bad_param("stop_token_ids", "'stop_token_ids' must be an array of token ids");
    p.stop_token_ids = parse_ids(*v, "stop_token_ids", ctx);
  }
}

void check_model(const json& b, const ParseContext& ctx, GenSpec& spec) {
  spec.model = ctx.served_model_name;
  const json* m = field(b, "model");
  if (!m) return;
  if (!m->is_string()) bad_param("model", "'model' must be a string");
  std::string name = m->get<std::string>();
  if (name != ctx.served_model_name)
    throw ApiError(404, fmt::format("The model '{}' does not exist; this server serves '{}'", name,
                                    ctx.served_model_name),
                   "model", "invalid_request_error", "model_not_found");
}

void parse_stream(const json& b, GenSpec& spec) {
  if (auto v = opt_bool(b, "stream")) spec.stream = *v;
  if (const json* so = field(b, "stream_options")) {
    if (!so->is_object()) bad_param("stream_options", "'stream_options' must be an object");
    if (!spec.stream) bad_param("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (auto v = opt_bool(*so, "include_usage")) spec.include_usage = *v;
  }
}

std::vector<int32_t> encode_text(const std::string& text, const ParseContext& ctx, bool add_special) {
  DP_CHECK(ctx.tok != nullptr);
  return ctx.tok->encode(text, add_special);
}

// The length checks every endpoint shares; `default_to_rest` picks the room left in the context.
void check_lengths(GenSpec& spec, const ParseContext& ctx, std::optional<int64_t> max_tokens, int64_t fallback,
                   bool default_to_rest, const std::string& prompt_param, const std::string& max_param) {
  auto name = [&](RequestParam p) { return "'" + (p == RequestParam::kMaxNewTokens ? max_param : prompt_param) + "'"; };
  int64_t longest = spec.input_embeds_rows;
  for (const auto& p : spec.prompts) {
    if (auto v = ctx.limits.check_prompt(p, name)) bad_param(prompt_param, v->message);
    longest = std::max<int64_t>(longest, int64_t(p.size()));
  }
  if (auto v = ctx.limits.check_prompt_length(longest, RequestParam::kPrompt)) bad_param(prompt_param, v->message);
  int64_t mt = max_tokens ? *max_tokens : default_to_rest ? ctx.limits.context_length - longest : fallback;
  if (auto v = ctx.limits.check_max_new_tokens(longest, mt, name)) bad_param(max_param, v->message);
  spec.base.params.max_new_tokens = mt;
}

std::string content_text(const json& content, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string out;
    for (const auto& part : content) {
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
          !part["text"].is_string())
        bad_param(param, fmt::format("'{}' parts must be {{\"type\": \"text\", \"text\": ...}}; only text "
                                     "content is supported",
                                     param));
      out += part["text"].get<std::string>();
    }
    return out;
  }
  bad_param(param, fmt::format("'{}' must be a string or an array of text parts", param));
}

}  // namespace

json parse_json_body(const std::string& body) {
  if (body.empty()) throw ApiError(400, "The request body is empty; expected a JSON object", "", "invalid_request_error",
                                   "invalid_json");
  try {
    // Copying, rendering or printing a deeply nested value recurses once per level: a 400 kB body of
    // nested arrays would overflow the stack. No API field nests anywhere near this deep.
    static constexpr int kMaxDepth = 64;
    json j = json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxDepth)
        throw ApiError(400, fmt::format("The request body nests deeper than {} levels", kMaxDepth), "",
                       "invalid_request_error", "invalid_json");
      return true;
    });
    if (!j.is_object()) throw ApiError(400, "The request body must be a JSON object", "", "invalid_request_error",
                                       "invalid_json");
    return j;
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e400
    std::string what = e.what();
    bool utf8 = what.find("UTF-8") != std::string::npos || what.find("surrogate") != std::string::npos;
    throw ApiError(400,
                   utf8 ? fmt::format("The request body is not valid UTF-8: {}", what)
                        : fmt::format("The request body is not valid JSON: {}", what),
                   "", "invalid_request_error", utf8 ? "invalid_utf8" : "invalid_json");
  }
}

GenSpec parse_completion_request(const json& b, const ParseContext& ctx) {
  GenSpec spec;
  check_model(b, ctx, spec);
  const json* prompt = field(b, "prompt");
  if (!prompt) bad_param("prompt", "'prompt' is required");
  auto add_text = [&](const json& t) {
    spec.prompt_texts.push_back(t.get<std::string>());
    spec.prompts.push_back(encode_text(spec.prompt_texts.back(), ctx, true));
  };
  if (prompt->is_string()) {
    add_text(*prompt);
  } else if (prompt->is_array() && !prompt->empty()) {
    const auto& first = (*prompt)[0];
    if (first.is_string()) {
      for (const auto& t : *prompt) {
        if (!t.is_string()) bad_param("prompt", "'prompt' mixes strings with other types");
        add_text(t);
      }
    } else if (first.is_number()) {
      spec.prompts.push_back(parse_ids(*prompt, "prompt", ctx));
      spec.prompt_texts.emplace_back();
    } else if (first.is_array()) {
      for (const auto& p : *prompt) {
        if (!p.is_array()) bad_param("prompt", "'prompt' mixes token arrays with other types");
        spec.prompts.push_back(parse_ids(p, "prompt", ctx));
        spec.prompt_texts.emplace_back();
      }
    } else {
      bad_param("prompt", "'prompt' must be a string, an array of strings, or token ids");
    }
  } else {
    bad_param("prompt", prompt->is_array() ? "'prompt' must not be an empty array"
                                           : "'prompt' must be a string, an array of strings, or token ids");
  }
  if (int64_t(spec.prompts.size()) > RequestLimits::kMaxPrompts)
    bad_param("prompt", fmt::format("at most {} prompts per request", RequestLimits::kMaxPrompts));
  parse_sampling(b, spec.base.params, ctx);
  spec.stop = parse_stop(b);
  parse_stream(b, spec);
  if (auto v = opt_int(b, "n", RequestParam::kN)) spec.n = int32_t(*v);
  if (auto v = opt_bool(b, "echo")) spec.echo = *v;
  if (auto v = opt_int(b, "logprobs", RequestParam::kTopLogprobs)) {
    spec.logprobs = true;
    spec.base.return_logprob = true;
    spec.base.top_logprobs = int32_t(*v);
  }
  if (auto v = opt_bool(b, "skip_special_tokens")) spec.skip_special_tokens = *v;
  if (const json* bo = field(b, "best_of")) {
    if (as_int(*bo, "best_of") != spec.n) bad_param("best_of", "'best_of' other than n is not supported");
  }
  check_lengths(spec, ctx, opt_int(b, "max_tokens"), 16, false, "prompt", "max_tokens");
  return spec;
}

std::string render_chat_prompt(const json& b, const ParseContext& ctx) {
  const json* msgs = field(b, "messages");
  if (!msgs) bad_param("messages", "'messages' is required");
  if (!msgs->is_array()) bad_param("messages", "'messages' must be an array");
  if (msgs->empty()) bad_param("messages", "'messages' must contain at least one message");
  json clean = json::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    if (!m.is_object()) bad_param(fmt::format("messages[{}]", i), fmt::format("'messages[{}]' must be an object", i));
    const json* role = field(m, "role");
    if (!role || !role->is_string())
      bad_param(fmt::format("messages[{}].role", i), fmt::format("'messages[{}].role' is required", i));
    std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer")
      bad_param(fmt::format("messages[{}].role", i),
                fmt::format("'messages[{}].role' must be system, developer, user, assistant or tool, got '{}'", i, r));
    const json* content = field(m, "content");
    if (!content && r != "assistant")
      bad_param(fmt::format("messages[{}].content", i), fmt::format("'messages[{}].content' is required", i));
    json out = m;
    out["content"] = content ? content_text(*content, i) : std::string();
    clean.push_back(std::move(out));
  }
  if (!ctx.chat_template)
    throw ApiError(400,
                   "This model has no chat template, so /v1/chat/completions cannot format messages. Start the "
                   "server with --chat-template FILE, or use /v1/completions",
                   "messages", "invalid_request_error", "no_chat_template");
  json context;
  context["messages"] = std::move(clean);
  context["add_generation_prompt"] = true;
  context["bos_token"] = ctx.tok ? ctx.tok->bos_token() : "";
  context["eos_token"] = ctx.tok ? ctx.tok->eos_token() : "";
  try {
    return ctx.chat_template->render(context);
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("The chat template could not format these messages: {}", e.what()), "messages");
  }
}

GenSpec parse_chat_request(const json& b, const ParseContext& ctx) {
  GenSpec spec;
  check_model(b, ctx, spec);
  std::string text = render_chat_prompt(b, ctx);
  // The template already spells BOS where the model wants it.
  spec.prompts.push_back(encode_text(text, ctx, false));
  spec.prompt_texts.push_back(text);
  parse_sampling(b, spec.base.params, ctx);
  spec.stop = parse_stop(b);
  parse_stream(b, spec);
  if (auto v = opt_int(b, "n", RequestParam::kN)) spec.n = int32_t(*v);
  if (auto v = opt_bool(b, "logprobs")) spec.logprobs = *v;
  if (auto v = opt_int(b, "top_logprobs", RequestParam::kTopLogprobs)) {
    if (!spec.logprobs) bad_param("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
    spec.base.top_logprobs = int32_t(*v);
  }
  spec.base.return_logprob = spec.logprobs;
  if (auto v = opt_bool(b, "skip_special_tokens")) spec.skip_special_tokens = *v;
  std::optional<int64_t> mt = opt_int(b, "max_completion_tokens");
  const char* mt_name = "max_completion_tokens";
  if (!mt) {
    mt = opt_int(b, "max_tokens");
    mt_name = "max_tokens";
  }
  check_lengths(spec, ctx, mt, 0, true, "messages", mt_name);
  return spec;
}

GenSpec parse_generate_request(const json& b, const ParseContext& ctx) {
  GenSpec spec;
  spec.model = ctx.served_model_name;
  const json* text = field(b, "text");
  const json* ids = field(b, "input_ids");
  const json* embeds = field(b, "input_embeds");
  if (int(text != nullptr) + int(ids != nullptr) + int(embeds != nullptr) != 1)
    bad_param("text", "give exactly one of 'text', 'input_ids' or 'input_embeds'");
  if (text) {
    if (text->is_string()) {
      spec.prompt_texts.push_back(text->get<std::string>());
    } else if (text->is_array() && !text->empty()) {
      spec.batched = true;
      for (const auto& t : *text) {
        if (!t.is_string()) bad_param("text", "'text' must be a string or an array of strings");
        spec.prompt_texts.push_back(t.get<std::string>());
      }
    } else {
      bad_param("text", "'text' must be a string or a non-empty array of strings");
    }
    for (const auto& t : spec.prompt_texts) spec.prompts.push_back(encode_text(t, ctx, true));
  } else if (ids) {
    if (!ids->is_array() || ids->empty()) bad_param("input_ids", "'input_ids' must be a non-empty array");
    if ((*ids)[0].is_array()) {
      spec.batched = true;
      for (const auto& p : *ids) {
        if (!p.is_array()) bad_param("input_ids", "'input_ids' mixes token arrays with other types");
        spec.prompts.push_back(parse_ids(p, "input_ids", ctx));
      }
    } else {
      spec.prompts.push_back(parse_ids(*ids, "input_ids", ctx));
    }
    spec.prompt_texts.resize(spec.prompts.size());
  } else {
    if (!embeds->is_array() || embeds->empty())
      bad_param("input_embeds", "'input_embeds' must be a non-empty array of rows (arrays of numbers)");
    size_t width = 0;
    for (const auto& row : *embeds) {
      if (!row.is_array() || row.empty()) bad_param("input_embeds", "'input_embeds' rows must be non-empty arrays");
      if (width == 0) width = row.size();
      if (row.size() != width) bad_param("input_embeds", "'input_embeds' rows must all have the same length");
      for (const auto& x : row) {
        // Judged as the float the engine receives: 1e300 is a finite double but an infinite float.
        const float f = x.is_number() ? x.get<float>() : 0.0f;
        if (!x.is_number() || !std::isfinite(f))
          bad_param("input_embeds", "'input_embeds' must hold finite numbers (within 32-bit float range)");
        spec.input_embeds.push_back(f);
      }
    }
    if (ctx.limits.hidden > 0 && int64_t(width) != ctx.limits.hidden)
      bad_param("input_embeds", fmt::format("'input_embeds' rows must have the model's hidden size {}, got {}",
                                            ctx.limits.hidden, width));
    spec.input_embeds_rows = int64_t(embeds->size());
  }
  if (int64_t(spec.prompts.size()) > RequestLimits::kMaxPrompts)
    bad_param("text", fmt::format("at most {} prompts per request", RequestLimits::kMaxPrompts));

  json sp = json::object();
  if (const json* v = field(b, "sampling_params")) {
    if (!v->is_object()) bad_param("sampling_params", "'sampling_params' must be an object");
    sp = *v;
  }
  parse_sampling(sp, spec.base.params, ctx);
  spec.stop = parse_stop(sp);
  if (auto v = opt_int(sp, "n", RequestParam::kN)) spec.n = int32_t(*v);
  if (auto v = opt_bool(sp, "skip_special_tokens")) spec.skip_special_tokens = *v;
  if (auto v = opt_bool(b, "stream")) spec.stream = *v;
  if (auto v = opt_bool(b, "return_logprob")) spec.logprobs = *v;
  if (auto v = opt_int(b, "top_logprobs_num", RequestParam::kTopLogprobs)) spec.base.top_logprobs = int32_t(*v);
  spec.base.return_logprob = spec.logprobs;
  if (const json* rid = field(b, "rid")) {
    if (rid->is_string()) {
      spec.rids.push_back(rid->get<std::string>());
    } else if (rid->is_array()) {
      for (const auto& r : *rid) {
        if (!r.is_string()) bad_param("rid", "'rid' must be a string or an array of strings");
        spec.rids.push_back(r.get<std::string>());
      }
    } else {
      bad_param("rid", "'rid' must be a string or an array of strings");
    }
    size_t want = std::max<size_t>(spec.prompts.size(), 1);
    if (spec.rids.size() != want) bad_param("rid", fmt::format("'rid' must name {} request(s)", want));
  }
  check_lengths(spec, ctx, opt_int(sp, "max_new_tokens"), 128, false,
                text ? "text" : ids ? "input_ids" : "input_embeds", "max_new_tokens");
  return spec;
}

}  // namespace dpserve
