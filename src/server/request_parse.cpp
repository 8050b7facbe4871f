#include "server/request_parse.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"
#include "server/body_fields.h"
#include "server/constraint_parse.h"
#include "server/json_body.h"
#include "server/openai_error.h"
#include "server/tools_parse.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/tokenizer.h"
#include "vision/image_header.h"
#include "vision/image_resize.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

using P = RequestParam;

// What the fields of one body have said so far; the route's `finish` turns it into a GenSpec once
// every field has been read (fields arrive in key order, and some depend on others).
struct ParseState {
  explicit ParseState(const ParseContext& c) : ctx(c) {}
  const ParseContext& ctx;
  GenSpec spec;
  const json* prompt = nullptr;          // completions "prompt", chat "messages"
  const json* text = nullptr;            // /generate: exactly one of these three
  const json* input_ids = nullptr;
  const json* input_embeds = nullptr;
  const json* sampling_params = nullptr;
  const json* stream_options = nullptr;
  const json* rid = nullptr;
  const json* image_data = nullptr;      // /generate
  const json* token_ids_logprob = nullptr;  // /generate
  const json* lora_path = nullptr;       // SGLang's adapter name(s)
  int32_t model_lora = -1;               // the adapter `model` named (-1: the base model)
  uint64_t model_lora_generation = 0;
  std::string model_lora_name;
  std::optional<int64_t> max_tokens, max_completion_tokens, max_new_tokens, best_of, top_logprobs;
  std::optional<int64_t> logprob_start_len;  // /generate
  std::string min_tokens_param;  // the name min_new_tokens / min_tokens came under (empty: not sent)
  std::optional<int64_t> truncate_prompt_tokens;  // vLLM's: the tokens a prompt keeps (its -1 resolved)
  std::optional<int64_t> prompt_logprobs;         // vLLM's: alternatives per prompt position
  std::string suffix;                             // completions' fill-in-the-middle suffix ("": none)
  std::optional<int64_t> think_budget;            // chat's thinking budget, and the name it came under
  std::string think_budget_param;
  bool logprobs = false;
};

// Reads one present, non-null field (clients send null for "use the default").
using FieldFn = void (*)(const json& v, const std::string& name, ParseState& st);
struct Field {
  std::string_view name;
  FieldFn read;
};
using FieldTable = std::vector<Field>;

// ---- values ----

double number(const json& v, const std::string& name, P p) {
  if (!v.is_number()) bad_param(name, fmt::format("'{}' must be a number, got {}", name, v.type_name()));
  const double x = v.get<double>();
  if (auto rule = RequestLimits::value_rule(p, x)) bad_param(name, fmt::format("'{}' {}, got {}", name, *rule, x));
  return x;
}

// A JSON integer as int64, never wrapped: nlohmann keeps 2^63 and up as unsigned, where
// get<int64_t>() would turn 2^64-1 into -1. Integral floats (1e3) count while a double holds every
// integer around them (|x| <= 2^53); beyond, the value may have been rounded: an integer literal
// below -2^63 (or above 2^64-1) reaches here as a double, -9223372036854775809 as exactly -2^63,
// and was accepted as that. Out of range is a 400.
int64_t integer(const json& v, const std::string& name, std::optional<P> p = std::nullopt) {
  auto out_of_range = [&](const std::string& shown) {
    const std::string rule = p ? RequestLimits::rule(*p)
                               : fmt::format("must be an integer in [{}, {}]", std::numeric_limits<int64_t>::min(),
                                             std::numeric_limits<int64_t>::max());
    bad_param(name, fmt::format("'{}' {}, got {}", name, rule, shown));
  };
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) out_of_range(std::to_string(u));
    x = int64_t(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>())) {
    const double d = v.get<double>();
    if (std::fabs(d) > 9007199254740992.0) out_of_range(v.dump() + " (too large to be an exact integer as written)");
    x = int64_t(d);
  } else {
    bad_param(name, fmt::format("'{}' must be an integer, got {}", name, v.is_number() ? v.dump() : v.type_name()));
  }
  if (p)
    if (auto rule = RequestLimits::int_rule(*p, x)) bad_param(name, fmt::format("'{}' {}, got {}", name, *rule, x));
  return x;
}

bool boolean(const json& v, const std::string& name) {
  if (!v.is_boolean()) bad_param(name, fmt::format("'{}' must be a boolean, got {}", name, v.type_name()));
  return v.get<bool>();
}

std::vector<int32_t> token_ids(const json& arr, const std::string& name, const ParseContext& ctx) {
  if (is_packed_ids(arr)) {  // parsed straight into int32 (json_body.h): only the vocabulary to check
    std::vector<int32_t> ids = packed_ids(arr);
    for (int32_t id : ids)
      if (auto rule = ctx.limits.token_rule(id)) bad_param(name, fmt::format("token id {} in '{}' {}", id, name, *rule));
    return ids;
  }
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const auto& v : arr) {
    if (!v.is_number_integer()) bad_param(name, fmt::format("'{}' token ids must be integers", name));
    // 2^63 and up stay unsigned in nlohmann: INT64_MAX stands for them (outside any vocabulary).
    const int64_t id = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())
                           ? std::numeric_limits<int64_t>::max()
                           : v.get<int64_t>();
    if (auto rule = ctx.limits.token_rule(id))
      bad_param(name, fmt::format("token id {} in '{}' {}", v.dump(), name, *rule));
    ids.push_back(int32_t(id));
  }
  return ids;
}

std::vector<int32_t> encode_text(const std::string& text, const ParseContext& ctx, bool add_special) {
  DP_CHECK(ctx.tok != nullptr);
  return ctx.tok->encode(text, add_special);
}


// ---- fields every generation route shares (SGLang's inside sampling_params) ----

template <P kParam>
void sampling_float(const json& v, const std::string& name, ParseState& st) {
  const float x = float(number(v, name, kParam));
  SamplingParams& p = st.spec.base.params;
  switch (kParam) {
    case P::kTemperature: p.temperature = x; break;
    case P::kTopP: p.top_p = x; break;
    case P::kMinP: p.min_p = x; break;
    case P::kFrequencyPenalty: p.frequency_penalty = x; break;
    case P::kPresencePenalty: p.presence_penalty = x; break;
    case P::kRepetitionPenalty: p.repetition_penalty = x; break;
    default: break;
  }
}

void top_k(const json& v, const std::string& name, ParseState& st) {
  st.spec.base.params.top_k = int32_t(integer(v, name, P::kTopK));
}

void seed(const json& v, const std::string& name, ParseState& st) {
  st.spec.base.params.seed = uint64_t(integer(v, name, P::kSeed));  // negative seeds keep their bits
}

void ignore_eos(const json& v, const std::string& name, ParseState& st) {
  st.spec.base.params.ignore_eos = boolean(v, name);
}

void stop_token_ids(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_array()) bad_param(name, fmt::format("'{}' must be an array of token ids", name));
  st.spec.base.params.stop_token_ids = token_ids(v, name, st.ctx);
}

void stop(const json& v, const std::string& name, ParseState& st) {
  std::vector<std::string>& out = st.spec.stop;
  out.clear();
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > 4) bad_param(name, fmt::format("'{}' takes at most 4 strings, got {}", name, v.size()));
    for (const auto& s : v) {
      if (!s.is_string()) bad_param(name, fmt::format("'{}' must be a string or an array of strings", name));
      out.push_back(s.get<std::string>());
    }
  } else {
    bad_param(name, fmt::format("'{}' must be a string or an array of strings", name));
  }
  for (const auto& s : out)
    if (s.empty()) bad_param(name, fmt::format("'{}' strings must not be empty", name));
}

// SGLang's data_parallel_rank: the DP group to run in (Request::dp_group; the router takes it as it is).
void data_parallel_rank(const json& v, const std::string& name, ParseState& st) {
  const int32_t groups = st.ctx.dp_size;
  auto rule = [&] {
    return groups == 1 ? fmt::format("'{}' must be 0 (this server has 1 DP group)", name)
                       : fmt::format("'{}' must be an integer in [0, {}] (this server has {} DP groups)", name, groups - 1,
                                     groups);
  };
  if (!v.is_number_integer()) bad_param(name, fmt::format("{}, got {}", rule(), v.is_number() ? v.dump() : v.type_name()));
  const bool neg = !v.is_number_unsigned() && v.get<int64_t>() < 0;
  if (neg || v.get<uint64_t>() >= uint64_t(groups)) bad_param(name, fmt::format("{}, got {}", rule(), v.dump()));
  st.spec.base.dp_group = int32_t(v.get<int64_t>());
}

void n(const json& v, const std::string& name, ParseState& st) { st.spec.n = int32_t(integer(v, name, P::kN)); }

void skip_special_tokens(const json& v, const std::string& name, ParseState& st) {
  st.spec.skip_special_tokens = boolean(v, name);
}

// SGLang's min_new_tokens, vLLM's (and SGLang's OpenAI routes') min_tokens; checked against the
// maximum once that is known (check_min_tokens).
void min_new_tokens(const json& v, const std::string& name, ParseState& st) {
  const int64_t m = integer(v, name);
  if (m < 0) bad_param(name, fmt::format("'{}' must be >= 0, got {}", name, m));
  st.spec.base.params.min_new_tokens = m;
  st.min_tokens_param = name;
}

// SGLang's no_stop_trim, vLLM's include_stop_str_in_output: the stop string (or the text of the stop
// token) that ended the output stays in its text.
void no_stop_trim(const json& v, const std::string& name, ParseState& st) { st.spec.no_stop_trim = boolean(v, name); }

// vLLM's truncate_prompt_tokens: -1 (the model's context) or k >= 1; applied once the prompt is
// tokenized (truncate_prompts).
void truncate_prompt_tokens(const json& v, const std::string& name, ParseState& st) {
  st.truncate_prompt_tokens = truncate_prompt_tokens_value(integer(v, name), st.ctx.limits, name);
}

// vLLM's prompt_logprobs: every prompt position's logprob with this many alternatives (the top
// alternatives' limit of top_logprobs; vLLM's -1, the whole vocabulary, is past it).
void prompt_logprobs(const json& v, const std::string& name, ParseState& st) {
  st.prompt_logprobs = integer(v, name, P::kTopLogprobs);
}

// vLLM's return_tokens_as_token_ids: logprobs name tokens "token_id:<id>" (default: the server's
// --return-tokens-as-token-ids).
void return_tokens_as_token_ids(const json& v, const std::string& name, ParseState& st) {
  st.spec.tokens_as_ids = boolean(v, name);
}

// vLLM's return_token_ids: the prompt's and the output's token ids beside the text.
void return_token_ids(const json& v, const std::string& name, ParseState& st) {
  st.spec.return_token_ids = boolean(v, name);
}

// vLLM's cache_salt: the prefix cache shares this request's prompt pages only with requests of the
// same salt (kv/radix_cache.h), so another tenant cannot learn a prompt by timing a cache hit.
void cache_salt(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_string() || v.get<std::string>().empty())
    bad_param(name, fmt::format("'{}' must be a non-empty string", name));
  if (v.get<std::string>().size() > RequestLimits::kMaxCacheSaltBytes)
    bad_param(name, fmt::format("'{}' is longer than {} bytes", name, RequestLimits::kMaxCacheSaltBytes));
  st.spec.base.cache_salt = v.get<std::string>();
}

// SGLang's and vLLM's priority: the scheduler's order under --enable-priority-scheduling. Without
// it only 0 (the default) is accepted, as vLLM refuses a priority its scheduler would ignore.
void priority(const json& v, const std::string& name, ParseState& st) {
  const int64_t p = integer(v, name);
  if (p < std::numeric_limits<int32_t>::min() || p > std::numeric_limits<int32_t>::max())
    bad_param(name, fmt::format("'{}' must be a 32-bit integer, got {}", name, p));
  if (p != 0 && !st.ctx.priority_scheduling)
    bad_param(name, fmt::format("'{}' {} needs the server started with --enable-priority-scheduling", name, p));
  st.spec.base.priority = int32_t(p);
  st.spec.priority_given = true;
}

const FieldTable kSamplingFields = {
    {"temperature", sampling_float<P::kTemperature>},
    {"top_p", sampling_float<P::kTopP>},
    {"top_k", top_k},
    {"min_p", sampling_float<P::kMinP>},
    {"frequency_penalty", sampling_float<P::kFrequencyPenalty>},
    {"presence_penalty", sampling_float<P::kPresencePenalty>},
    {"repetition_penalty", sampling_float<P::kRepetitionPenalty>},
    {"seed", seed},
    {"sampling_seed", seed},
    {"ignore_eos", ignore_eos},
    {"stop_token_ids", stop_token_ids},
    {"stop", stop},
    {"n", n},
    {"skip_special_tokens", skip_special_tokens},
};

// ---- fields of the OpenAI routes ----

// Adapters come and go at run time (/load_lora_adapter): each lookup reads the registry now, and the
// request carries the generation it found, which enqueue checks again.
std::optional<LoraRegistry::Adapter> find_lora(const ParseContext& ctx, const std::string& name) {
  if (!ctx.limits.lora) return std::nullopt;
  return ctx.limits.lora->find(name);
}

std::vector<std::string> lora_names(const ParseContext& ctx) {
  std::vector<std::string> out;
  if (ctx.limits.lora)
    for (const auto& a : ctx.limits.lora->list()) out.push_back(a.name);
  return out;
}

std::string lora_list(const ParseContext& ctx) {
  const std::vector<std::string> names = lora_names(ctx);
  return names.empty() ? "none (start the server with --lora-paths, or load one with /load_lora_adapter)"
                       : fmt::format("{}", fmt::join(names, ", "));
}

// The served model, an adapter's name (vLLM) or "<served model>:<adapter>" (SGLang); anything else is
// a 404 as OpenAI answers for a model it does not have. The reply echoes the name as given.
void model(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_string()) bad_param(name, "'model' must be a string");
  const std::string m = v.get<std::string>();
  const std::string& served = st.ctx.served_model_name;
  st.spec.model = m;
  if (m == served) return;
  auto a = find_lora(st.ctx, m);
  if (!a && m.size() > served.size() + 1 && m.compare(0, served.size(), served) == 0 && m[served.size()] == ':')
    a = find_lora(st.ctx, m.substr(served.size() + 1));
  if (!a)
    throw ApiError(404,
                   lora_names(st.ctx).empty()
                       ? fmt::format("The model '{}' does not exist; this server serves '{}'", m, served)
                       : fmt::format("The model '{}' does not exist; this server serves '{}' and the LoRA adapters {}",
                                     m, served, lora_list(st.ctx)),
                   "model", "invalid_request_error", "model_not_found");
  st.model_lora = a->slot;
  st.model_lora_generation = a->generation;
  st.model_lora_name = a->name;
}

void lora_path(const json& v, const std::string&, ParseState& st) { st.lora_path = &v; }

// Once the prompts are known: the adapter of each (SGLang's lora_path: one name for every prompt, or
// a list with one name or null per prompt; names are --lora-paths names), merged with the one
// `model` named. A name that is not loaded, or that contradicts `model`, is a 400 naming lora_path.
void resolve_lora(ParseState& st, size_t n_prompts) {
  const ParseContext& ctx = st.ctx;
  GenSpec& spec = st.spec;
  auto one = [&](const json& x, const std::string& param) -> int32_t {
    if (x.is_null()) {
      spec.lora_generations.push_back(st.model_lora_generation);
      return st.model_lora;
    }
    if (!x.is_string())
      bad_param(param, fmt::format("'{}' must be a LoRA adapter name (a string), null, or a list of them", param));
    const std::string n = x.get<std::string>();
    const auto a = find_lora(ctx, n);
    if (!a)
      throw ApiError(400, fmt::format("'{}': the LoRA adapter '{}' is not loaded; loaded adapters: {}", param, n,
                                      lora_list(ctx)),
                     param, "invalid_request_error", "lora_not_found");
    if (st.model_lora >= 0 && a->slot != st.model_lora)
      bad_param(param, fmt::format("'{}' names the LoRA adapter '{}' but 'model' names '{}'", param, n,
                                   st.model_lora_name));
    spec.lora_generations.push_back(a->generation);
    return a->slot;
  };
  spec.loras.clear();
  spec.lora_generations.clear();
  if (const json* v = st.lora_path; v && v->is_array()) {
    if (v->size() != n_prompts)
      bad_param("lora_path", fmt::format("'lora_path' lists {} adapters for {} prompt(s): give one per prompt, or one "
                                         "name for all", v->size(), n_prompts));
    for (size_t i = 0; i < v->size(); ++i) spec.loras.push_back(one((*v)[i], fmt::format("lora_path[{}]", i)));
  } else if (v) {
    spec.loras.push_back(one(*v, "lora_path"));
  } else if (st.model_lora >= 0) {
    spec.loras.push_back(st.model_lora);
    spec.lora_generations.push_back(st.model_lora_generation);
  }
  if (std::all_of(spec.loras.begin(), spec.loras.end(), [](int32_t s) { return s < 0; })) {
    spec.loras.clear();
    spec.lora_generations.clear();
  }
}

void stream(const json& v, const std::string& name, ParseState& st) { st.spec.stream = boolean(v, name); }
void stream_options(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_object()) bad_param(name, "'stream_options' must be an object");
  st.stream_options = &v;
}
void prompt(const json& v, const std::string&, ParseState& st) { st.prompt = &v; }
void max_tokens(const json& v, const std::string& name, ParseState& st) { st.max_tokens = integer(v, name); }
void max_completion_tokens(const json& v, const std::string& name, ParseState& st) {
  st.max_completion_tokens = integer(v, name);
}
void echo(const json& v, const std::string& name, ParseState& st) { st.spec.echo = boolean(v, name); }
void best_of(const json& v, const std::string& name, ParseState& st) { st.best_of = integer(v, name); }
void suffix(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_string()) bad_param(name, fmt::format("'{}' must be a string", name));
  st.suffix = v.get<std::string>();
}
// vLLM's thinking_token_budget and llama.cpp's thinking_budget_tokens: one setting under two names.
void think_budget(const json& v, const std::string& name, ParseState& st) {
  if (st.think_budget)
    bad_param(name, fmt::format("'{}' and '{}' are the same setting: give one", st.think_budget_param, name));
  st.think_budget = integer(v, name);
  st.think_budget_param = name;
}
// Completions: how many alternatives to report per position. Chat: whether to report logprobs.
void completion_logprobs(const json& v, const std::string& name, ParseState& st) {
  st.top_logprobs = integer(v, name, P::kTopLogprobs);
  st.logprobs = true;
}
void chat_logprobs(const json& v, const std::string& name, ParseState& st) { st.logprobs = boolean(v, name); }
void top_logprobs(const json& v, const std::string& name, ParseState& st) {
  st.top_logprobs = integer(v, name, P::kTopLogprobs);
}
// OpenAI's end-user id: it changes nothing in the output, so it is only type-checked.
void user(const json& v, const std::string& name, ParseState&) {
  if (!v.is_string()) bad_param(name, fmt::format("'{}' must be a string", name));
}

// Read after the whole body, by the structured-output parsers (constraint_parse.h, tools_parse.h):
// they need the field together with others and in the client's key order.
void later(const json&, const std::string&, ParseState&) {}

// OpenAI fields that change nothing in the output (docs/api.md lists them): accepted, type-checked.
// vLLM's guided_decoding_backend too: one constraint engine serves every backend name.
void output_neutral(const json& v, const std::string& name, ParseState&) {
  if (name == "metadata") return check_metadata(v, name);
  const bool ok = name == "store" ? v.is_boolean() : v.is_string();
  if (!ok) bad_param(name, fmt::format("'{}' has the wrong type ({})", name, v.type_name()));
}

void separate_reasoning(const json& v, const std::string& name, ParseState& st) {
  st.spec.separate_reasoning = boolean(v, name);
}

// OpenAI's predicted outputs: {"type": "content", "content": text or [{"type": "text", "text"}...]}.
// The text is tokenized as output (no special tokens) and is only drafted from: the answer is the
// one the request gives without it. Ids the engine cannot feed end it there, and so does the
// context length (no output is longer).
void prediction(const json& v, const std::string& name, ParseState& st) {
  if (v.is_null()) return;
  const std::string shape = fmt::format("'{}' must be {{\"type\": \"content\", \"content\": a string or a list of "
                                        "text parts}}", name);
  if (!v.is_object()) bad_param(name, shape);
  for (const auto& [k, _] : v.items())
    if (k != "type" && k != "content")
      bad_param(name + "." + k, fmt::format("'{}.{}' is not a field of it; {}", name, k, shape));
  const auto type = v.find("type");
  if (type == v.end() || *type != "content") bad_param(name + ".type", shape);
  const auto content = v.find("content");
  if (content == v.end()) bad_param(name + ".content", shape);
  std::string text;
  if (content->is_string()) {
    text = content->get<std::string>();
  } else if (content->is_array()) {
    for (const auto& part : *content) {
      if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
          !part["text"].is_string() || part.size() != 2)
        bad_param(name + ".content", fmt::format("'{}.content' parts must be {{\"type\": \"text\", \"text\": "
                                                 "string}}", name));
      text += part["text"].get<std::string>();
    }
  } else {
    bad_param(name + ".content", shape);
  }
  std::vector<int32_t> ids = encode_text(text, st.ctx, false);
  size_t keep = 0;
  while (keep < ids.size() && int64_t(keep) < st.ctx.limits.context_length && !st.ctx.limits.token_rule(ids[keep]))
    ++keep;
  ids.resize(keep);
  st.spec.base.prediction = std::move(ids);
}

// vLLM's allowed_token_ids: a non-empty list of vocabulary ids, at most as many as the vocabulary
// has (repeats are harmless); vLLM refuses an empty list and ids outside the vocabulary.
void allowed_token_ids(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_array()) bad_param(name, fmt::format("'{}' must be an array of token ids", name));
  if (v.empty()) bad_param(name, fmt::format("'{}' must not be empty (leave it out to allow every token)", name));
  const int64_t vocab = st.ctx.limits.vocab > 0 ? st.ctx.limits.vocab : int64_t(1) << 20;
  if (int64_t(v.size()) > vocab)
    bad_param(name, fmt::format("'{}' names {} ids; the vocabulary has {}", name, v.size(), vocab));
  st.spec.base.allowed_token_ids = token_ids(v, name, st.ctx);
}

// vLLM's bad_words, tokenized as vLLM (v1) does: each word, left-stripped, is encoded without special
// tokens, and again after one space; the spaced form is kept only when it is as long as the plain one
// and starts with another id (a word-initial token of its own). A word that encodes to nothing is
// refused; the sequences and their ids are bounded as vLLM bounds them.
void bad_words(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_array()) bad_param(name, fmt::format("'{}' must be an array of strings", name));
  auto& out = st.spec.base.bad_words;
  out.clear();
  int64_t ids = 0;
  for (const auto& w : v) {
    if (!w.is_string()) bad_param(name, fmt::format("'{}' must be an array of strings", name));
    if (int64_t(out.size()) >= RequestLimits::kMaxBadWordSequences)
      bad_param(name, fmt::format("'{}' gives more than {} token sequences once tokenized", name,
                                  RequestLimits::kMaxBadWordSequences));
    // Python's str.lstrip(), as vLLM strips the word (all of Python's whitespace, not only ASCII).
    const std::string word = jinja::py_strip(w.get_ref<const std::string&>(), nullptr, true, false);
    std::vector<int32_t> plain = encode_text(word, st.ctx, false);
    if (plain.empty())
      bad_param(name, fmt::format("'{}' entry {} tokenizes to no token", name, w.dump()));
    std::vector<int32_t> spaced = encode_text(" " + word, st.ctx, false);
    const bool keep_spaced = !spaced.empty() && spaced.size() == plain.size() && spaced[0] != plain[0];
    for (auto* q : {&plain, keep_spaced ? &spaced : nullptr}) {
      if (!q) continue;
      for (int32_t id : *q)
        if (auto rule = st.ctx.limits.token_rule(id))
          bad_param(name, fmt::format("'{}' entry {} tokenizes to token id {}, which {}", name, w.dump(), id, *rule));
      ids += int64_t(q->size());
      out.push_back(std::move(*q));
    }
    if (int64_t(out.size()) > RequestLimits::kMaxBadWordSequences || ids > RequestLimits::kMaxBadWordTokens)
      bad_param(name, fmt::format("'{}' gives {} token sequences of {} ids once tokenized; at most {} sequences of {} "
                                  "ids in all", name, out.size(), ids, RequestLimits::kMaxBadWordSequences,
                                  RequestLimits::kMaxBadWordTokens));
  }
}

// A field of OpenAI's API this server does not implement: its default or empty value ({} for
// logit_bias, [] for tools, false for store) is accepted, anything else is a 400 naming it.
void unsupported(const json& v, const std::string& name, ParseState&) {
  const bool empty = (v.is_boolean() && !v.get<bool>()) || (v.is_object() && v.empty()) ||
                     (v.is_array() && v.empty()) || (v.is_string() && v.get<std::string>().empty());
  const bool default_choice = (name == "tool_choice" && v == "none") ||
                              (name == "response_format" && v.is_object() && v.size() == 1 && v.value("type", "") == "text") ||
                              (name == "service_tier" && (v == "auto" || v == "default"));
  if (!empty && !default_choice)
    throw ApiError(400, fmt::format("'{}' is not supported by this server", name), name, "", "unsupported_parameter");
}

// SGLang's and vLLM's extensions both OpenAI routes take.
const FieldTable kServingExtensionFields = {
    {"data_parallel_rank", data_parallel_rank},
    {"lora_path", lora_path},
    {"min_tokens", min_new_tokens},
    {"no_stop_trim", no_stop_trim},
    {"include_stop_str_in_output", no_stop_trim},
    {"truncate_prompt_tokens", truncate_prompt_tokens},
    {"prompt_logprobs", prompt_logprobs},
    {"return_tokens_as_token_ids", return_tokens_as_token_ids},
    {"return_token_ids", return_token_ids},
    {"cache_salt", cache_salt},
    {"priority", priority},
    {"allowed_token_ids", allowed_token_ids},
    {"bad_words", bad_words},
    // vLLM's structured outputs, read with the other constraints (constraint_parse.h).
    {"structured_outputs", later},
    {"guided_json", later},
    {"guided_regex", later},
    {"guided_choice", later},
    {"guided_grammar", later},
    {"guided_whitespace_pattern", later},
    {"guided_decoding_backend", output_neutral},
};

FieldTable with_sampling(FieldTable own) {
  own.insert(own.end(), kSamplingFields.begin(), kSamplingFields.end());
  return own;
}

// An OpenAI route's own fields, the sampling fields and the serving extensions.
FieldTable openai_fields(FieldTable own) {
  own = with_sampling(std::move(own));
  own.insert(own.end(), kServingExtensionFields.begin(), kServingExtensionFields.end());
  return own;
}

const FieldTable& completion_fields() {
  static const FieldTable t = openai_fields({
      {"model", model},       {"prompt", prompt},         {"max_tokens", max_tokens},
      {"echo", echo},         {"logprobs", completion_logprobs}, {"best_of", best_of},
      {"stream", stream},     {"stream_options", stream_options}, {"user", user},
      {"suffix", suffix}, {"logit_bias", later}, {"response_format", later},
      {"regex", later},       {"ebnf", later},
      {"metadata", output_neutral}, {"store", output_neutral}, {"service_tier", unsupported},
      {"prompt_cache_key", output_neutral}, {"safety_identifier", output_neutral},
  });
  return t;
}

const FieldTable& chat_fields() {
  static const FieldTable t = openai_fields({
      {"model", model},
      {"messages", prompt},
      {"max_tokens", max_tokens},
      {"max_completion_tokens", max_completion_tokens},
      {"logprobs", chat_logprobs},
      {"top_logprobs", top_logprobs},
      {"stream", stream},
      {"stream_options", stream_options},
      {"user", user},
      {"logit_bias", later},
      {"tools", later},
      {"tool_choice", later},
      {"parallel_tool_calls", later},
      {"response_format", later},
      {"regex", later},
      {"ebnf", later},
      {"chat_template_kwargs", later},
      {"add_generation_prompt", later},
      {"continue_final_message", later},
      {"echo", later},
      {"chat_template", later},
      {"documents", later},
      {"separate_reasoning", separate_reasoning},
      {"thinking_token_budget", think_budget},
      {"thinking_budget_tokens", think_budget},
      {"functions", unsupported},
      {"function_call", unsupported},
      {"modalities", unsupported},
      {"audio", unsupported},
      {"prediction", prediction},
      {"reasoning_effort", later},
      {"web_search_options", unsupported},
      {"store", output_neutral},
      {"metadata", output_neutral},
      {"prompt_cache_key", output_neutral},
      {"safety_identifier", output_neutral},
      {"service_tier", unsupported},
  });
  return t;
}

// ---- fields of SGLang's /generate ----

void text(const json& v, const std::string&, ParseState& st) { st.text = &v; }
void input_ids(const json& v, const std::string&, ParseState& st) { st.input_ids = &v; }
void input_embeds(const json& v, const std::string&, ParseState& st) { st.input_embeds = &v; }
void sampling_params(const json& v, const std::string& name, ParseState& st) {
  if (!v.is_object()) bad_param(name, "'sampling_params' must be an object");
  st.sampling_params = &v;
}
void return_logprob(const json& v, const std::string& name, ParseState& st) { st.logprobs = boolean(v, name); }
void rid(const json& v, const std::string&, ParseState& st) { st.rid = &v; }
void image_data(const json& v, const std::string&, ParseState& st) { st.image_data = &v; }
void token_ids_logprob(const json& v, const std::string&, ParseState& st) { st.token_ids_logprob = &v; }
void max_new_tokens(const json& v, const std::string& name, ParseState& st) { st.max_new_tokens = integer(v, name); }
void logprob_start_len(const json& v, const std::string& name, ParseState& st) {
  st.logprob_start_len = integer(v, name);
  if (*st.logprob_start_len < -1)
    bad_param(name, fmt::format("'{}' must be -1 (output tokens only) or a prompt position, got {}", name,
                                *st.logprob_start_len));
}
void return_text_in_logprobs(const json& v, const std::string& name, ParseState& st) {
  st.spec.return_text_in_logprobs = boolean(v, name);
}
// Hugging Face's fast tokenizers, which SGLang uses, ignore it: no spaces are put between special
// tokens either way, as here.
void spaces_between_special_tokens(const json& v, const std::string& name, ParseState&) { boolean(v, name); }
// SGLang's per-request metrics logging switch: it changes nothing in the output.
void log_metrics(const json& v, const std::string& name, ParseState&) { boolean(v, name); }
// SGLang's stop_regex: a pattern or a list of them (PCRE2 here, Python's re there: the common
// syntax is the same); compiled now, so a bad one is a 400 before anything runs.
void stop_regex(const json& v, const std::string& name, ParseState& st) {
  std::vector<std::string> patterns;
  if (v.is_string()) {
    patterns.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const auto& s : v) {
      if (!s.is_string()) bad_param(name, fmt::format("'{}' must be a string or an array of strings", name));
      patterns.push_back(s.get<std::string>());
    }
  } else {
    bad_param(name, fmt::format("'{}' must be a string or an array of strings", name));
  }
  if (patterns.empty()) return;
  if (patterns.size() > 16) bad_param(name, fmt::format("'{}' takes at most 16 patterns, got {}", name, patterns.size()));
  for (const auto& p : patterns) {
    if (p.empty()) bad_param(name, fmt::format("'{}' patterns must not be empty", name));
    if (p.size() > 4096) bad_param(name, fmt::format("'{}' patterns are at most 4096 bytes long", name));
  }
  try {
    st.spec.stop_regex = std::make_shared<const StopRegex>(patterns);
  } catch (const std::invalid_argument& e) {
    bad_param(name, fmt::format("'{}': {}", name, e.what()));
  }
}

void stream_interval(const json& v, const std::string& name, ParseState&) {
  if (integer(v, name) != 1)
    throw ApiError(400, fmt::format("'{}' other than 1 is not supported by this server (every step's tokens are "
                                    "streamed as they come)", name), name, "", "unsupported_parameter");
}

const FieldTable& generate_fields() {
  static const FieldTable t = {
      {"text", text},
      {"input_ids", input_ids},
      {"input_embeds", input_embeds},
      {"sampling_params", sampling_params},
      {"stream", stream},
      {"return_logprob", return_logprob},
      {"top_logprobs_num", top_logprobs},
      {"rid", rid},
      {"image_data", image_data},
      {"logprob_start_len", logprob_start_len},
      {"return_text_in_logprobs", return_text_in_logprobs},
      {"log_metrics", log_metrics},
      {"token_ids_logprob", token_ids_logprob},
      // SGLang fields this server does not implement: accepted at their default (null, false, empty),
      // anything else is a 400 naming them.
      {"lora_path", lora_path},
      // SGLang's internal id of a dynamically loaded adapter; adapters here are named, so refused.
      {"lora_id", unsupported},
      {"custom_logit_processor", unsupported},
      {"return_hidden_states", unsupported},
      {"session_params", unsupported},
      {"modalities", unsupported},
      {"priority", priority},
      {"data_parallel_rank", data_parallel_rank},
      {"bootstrap_host", unsupported},
      {"bootstrap_port", unsupported},
      {"bootstrap_room", unsupported},
  };
  return t;
}

const FieldTable& generate_sampling_fields() {
  static const FieldTable t = with_sampling({{"max_new_tokens", max_new_tokens},
                                             {"min_new_tokens", min_new_tokens},
                                             {"regex", later},
                                             {"json_schema", later},
                                             {"ebnf", later},
                                             {"logit_bias", later},
                                             {"no_stop_trim", no_stop_trim},
                                             {"spaces_between_special_tokens", spaces_between_special_tokens},
                                             {"stream_interval", stream_interval},
                                             {"stop_regex", stop_regex},
                                             {"structural_tag", later},
                                             {"custom_params", unsupported}});
  return t;
}

const Field* find_field(const FieldTable& t, std::string_view name) {
  for (const auto& f : t)
    if (f.name == name) return &f;
  return nullptr;
}

// Reads every field of `obj` with its table entry; an unknown one is a 400 naming it (`prefix`
// names the object it sits in, e.g. "sampling_params.").
void read_fields(const json& obj, const FieldTable& table, ParseState& st, const std::string& prefix = "") {
  for (const auto& [key, value] : obj.items()) {
    const Field* f = find_field(table, key);
    if (!f)
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}{}", prefix, key), prefix + key, "",
                     "unknown_parameter");
    if (!value.is_null()) f->read(value, key, st);
  }
}

// ---- once every field is read ----

// What a request that names no maximum gets: `fallback` (completions' 16); all the room the context
// leaves (chat, SGLang's null); or `fallback` shrunk to that room (SGLang's default 128, which it
// checks only when given).
enum class DefaultMax { kFallback, kRest, kFallbackWithinRest };

// The length checks every route shares.
void check_lengths(GenSpec& spec, const ParseContext& ctx, std::optional<int64_t> max_tokens, int64_t fallback,
                   DefaultMax dflt, const std::string& prompt_param, const std::string& max_param) {
  auto name = [&](P p) { return "'" + (p == P::kMaxNewTokens ? max_param : prompt_param) + "'"; };
  // OpenAI's code for a prompt (and output) that does not fit: clients trim their history on it.
  auto too_long = [](const std::string& param, const std::string& message) {
    throw ApiError(400, message, param, "invalid_request_error", "context_length_exceeded");
  };
  int64_t longest = spec.input_embeds_rows;
  for (const auto& p : spec.prompts) {
    if (auto v = ctx.limits.check_prompt_length(int64_t(p.size()), P::kPrompt)) too_long(prompt_param, v->message);
    if (auto v = ctx.limits.check_prompt(p, name)) bad_param(prompt_param, v->message);
    longest = std::max<int64_t>(longest, int64_t(p.size()));
  }
  if (auto v = ctx.limits.check_prompt_length(longest, P::kPrompt)) too_long(prompt_param, v->message);
  const int64_t room = ctx.limits.room_after(longest);
  const int64_t mt = max_tokens                                            ? *max_tokens
                     : dflt == DefaultMax::kRest                           ? room
                     : dflt == DefaultMax::kFallbackWithinRest && room > 0 ? std::min(fallback, room)
                                                                           : fallback;
  if (auto v = ctx.limits.check_max_new_tokens(longest, mt, name)) {
    if (mt >= 1 && mt > room) too_long(max_param, v->message);
    bad_param(max_param, v->message);
  }
  spec.base.params.max_new_tokens = mt;
}

// min_tokens / min_new_tokens within the maximum the request ends up with (SGLang's and vLLM's rule).
void check_min_tokens(const ParseState& st, const std::string& max_param) {
  const SamplingParams& p = st.spec.base.params;
  if (p.min_new_tokens > p.max_new_tokens)
    bad_param(st.min_tokens_param, fmt::format("'{}' {} is more than '{}' {}", st.min_tokens_param, p.min_new_tokens,
                                               max_param, p.max_new_tokens));
}

// vLLM's truncate_prompt_tokens: each prompt keeps its last k tokens (vLLM cuts from the left). A
// prompt that was cut echoes as the text of what is left, not as the text sent.
void truncate_prompts(ParseState& st) {
  if (!st.truncate_prompt_tokens) return;
  GenSpec& spec = st.spec;
  const int64_t k = *st.truncate_prompt_tokens;
  for (size_t i = 0; i < spec.prompts.size(); ++i) {
    std::vector<int32_t>& p = spec.prompts[i];
    if (int64_t(p.size()) <= k) continue;
    p.erase(p.begin(), p.end() - k);
    if (i < spec.prompt_texts.size()) spec.prompt_texts[i].clear();
  }
}

// Once the output's logprobs are settled: what they show, and vLLM's prompt_logprobs. The engine
// reports one count of alternatives for prompt and output positions, the larger; each list is cut
// to its own count when formatted.
void finish_prompt_logprobs(ParseState& st) {
  GenSpec& spec = st.spec;
  spec.shown_top_logprobs = spec.base.top_logprobs;
  if (!st.prompt_logprobs) return;
  if (spec.stream) bad_param("prompt_logprobs", "'prompt_logprobs' is not available when 'stream' is true");
  spec.prompt_logprobs = int32_t(*st.prompt_logprobs);
  spec.base.prompt_logprobs = true;
  spec.base.top_logprobs = std::max(spec.base.top_logprobs, *spec.prompt_logprobs);
}

void check_prompt_count(const GenSpec& spec, const std::string& prompt_param) {
  if (int64_t(spec.prompts.size()) > RequestLimits::kMaxPrompts)
    bad_param(prompt_param, fmt::format("at most {} prompts per request", RequestLimits::kMaxPrompts));
}

// prompts x n: one request may not ask for more sequences than a server-wide limit allows.
void check_choices(const GenSpec& spec, const std::string& n_param) {
  const int64_t prompts = std::max<int64_t>(int64_t(spec.prompts.size()), 1);
  if (prompts * spec.n > RequestLimits::kMaxChoices)
    bad_param(n_param, fmt::format("{} prompts x '{}' {} = {} choices; at most {} per request", prompts, n_param,
                                   spec.n, prompts * spec.n, RequestLimits::kMaxChoices));
}

void finish_stream_options(ParseState& st) {
  if (!st.stream_options) return;
  if (!st.spec.stream) bad_param("stream_options", "'stream_options' is only allowed when 'stream' is true");
  for (const auto& [key, value] : st.stream_options->items()) {
    if (key == "continuous_usage_stats") {
      if (!value.is_null()) st.spec.continuous_usage = boolean(value, "stream_options.continuous_usage_stats");
      continue;
    }
    if (key != "include_usage")
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: stream_options.{}", key),
                     "stream_options." + key, "", "unknown_parameter");
    if (!value.is_null()) st.spec.include_usage = boolean(value, "include_usage");
  }
}

// One message's content for the template. A string stays a string, and so does a list of text
// parts (joined: every template reads a string). A list with images keeps its parts, as
// {"type": "text", "text": ...} and {"type": "image"}, so a vision template places each image where
// the client put it; the images' URLs go to `images` in order.
json message_content(const json& content, size_t i, std::vector<ImageRef>* images) {
  const std::string param = fmt::format("messages[{}].content", i);
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_param(param, fmt::format("'{}' must be a string or an array of content parts", param));
  std::string text;
  json parts = json::array();
  bool any_image = false;
  for (size_t k = 0; k < content.size(); ++k) {
    const json& part = content[k];
    const std::string pp = fmt::format("{}[{}]", param, k);
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad_param(pp, fmt::format("'{}' must be an object with a 'type' (\"text\" or \"image_url\")", pp));
    const std::string type = part["type"].get<std::string>();
    if (type != "text" && type != "image_url")
      bad_param(pp + ".type", fmt::format("'{}.type' must be \"text\" or \"image_url\", got '{}'", pp,
                                          type.substr(0, 40)));
    for (const auto& [key, value] : part.items())
      if (key != "type" && key != (type == "image_url" ? "image_url" : "text"))
        throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}.{}", pp, key), pp + "." + key,
                       "", "unknown_parameter");
    if (type == "text") {
      if (!part.contains("text") || !part["text"].is_string())
        bad_param(pp, fmt::format("'{}.text' must be a string", pp));
      text += part["text"].get<std::string>();
      parts.push_back({{"type", "text"}, {"text", part["text"]}});
    } else {  // image_url
      const json* iu = part.contains("image_url") ? &part["image_url"] : nullptr;
      if (!iu || !iu->is_object() || !iu->contains("url") || !(*iu)["url"].is_string())
        bad_param(pp + ".image_url", fmt::format("'{}.image_url' must be an object with a string 'url'", pp));
      for (const auto& [key, value] : iu->items()) {
        if (key == "url") continue;
        const std::string kp = pp + ".image_url." + key;
        if (key != "detail")
          throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", kp), kp, "", "unknown_parameter");
        // The model's preprocessor (min_pixels / max_pixels) decides the resolution; "low" and
        // "high" would ask for something else, so only the default is accepted.
        if (!value.is_null() && value != "auto")
          bad_param(kp, fmt::format("'{}' must be \"auto\": the image's resolution is set by the model's "
                                    "preprocessor (min_pixels / max_pixels), not by the request",
                                    kp));
      }
      if (!images) throw ApiError(400, "This route does not accept images", pp);
      images->push_back({(*iu)["url"].get<std::string>(), pp + ".image_url.url"});
      parts.push_back({{"type", "image"}});
      any_image = true;
    }
  }
  if (any_image) return parts;
  return text;
}

// The request's images, materialized (decoded, RGB, resized) here on rank 0 before anything is
// queued, and each prompt's image_pad tokens expanded to their images' lengths. A model without
// images refuses them; for one with images, the prompt must name each image with exactly one
// image_pad (the chat template writes it; /generate's text or input_ids spell it).
void refuse_images_without_vision(const std::vector<ImageRef>& refs, const ParseContext& ctx) {
  if (!refs.empty() && (!ctx.images || !ctx.images->tokens.takes_images()))
    throw ApiError(400, fmt::format("The model '{}' does not accept images", ctx.served_model_name), refs[0].param,
                   "invalid_request_error", "images_not_supported");
}

void attach_images(GenSpec& spec, const std::vector<ImageRef>& refs, bool raw_base64, const ParseContext& ctx,
                   const std::string& prompt_param, std::optional<int64_t> max_tokens = std::nullopt,
                   const std::string& max_param = "max_tokens") {
  refuse_images_without_vision(refs, ctx);
  const ImageOptions* io = ctx.images;
  if (!io || !io->tokens.takes_images()) return;
  const int32_t pad = io->tokens.image_pad;
  if (int64_t(refs.size()) > io->max_images)
    bad_param(refs[0].param, fmt::format("{} images in one request; at most {} (--max-images-per-request)",
                                         refs.size(), io->max_images));
  if (!refs.empty() && spec.prompts.size() != 1)
    bad_param(refs[0].param, "images go with exactly one prompt of token ids or text (not input_embeds, not a batch)");
  for (const auto& p : spec.prompts) {
    const size_t pads = size_t(std::count(p.begin(), p.end(), pad));
    if (pads != refs.size())
      bad_param(prompt_param, fmt::format("the prompt has {} image_pad token(s) (id {}) but the request carries {} "
                                          "image(s): each image needs exactly one, where it belongs in the prompt",
                                          pads, pad, refs.size()));
  }
  if (refs.empty()) return;
  // Every image is judged from its header before any is decoded: its pixels against
  // --max-image-pixels, its tokens after smart_resize against the context, the memory its decode
  // will hold against --image-decode-memory. A small file whose header claims a huge image is
  // refused here at the cost of reading it.
  struct Judged {
    std::string bytes;
    int64_t cost = 0;
  };
  std::vector<Judged> judged;
  const ImagePreprocessConfig& pc = io->preprocess;
  int64_t prompt_len = int64_t(spec.prompts[0].size()) - int64_t(refs.size());
  auto name = [&](P p) { return "'" + (p == P::kMaxNewTokens ? max_param : prompt_param) + "'"; };
  for (const ImageRef& r : refs) {
    Judged j;
    j.bytes = image_bytes(r.source, raw_base64, *io, r.param);
    int64_t tokens = 0;
    try {
      const ImageHeader h = read_image_header(j.bytes);
      if (h.width * h.height > io->limits.max_decoded_pixels)
        fail("image is {}x{} = {} pixels, above the limit of {} (--max-image-pixels)", h.width, h.height,
             h.width * h.height, io->limits.max_decoded_pixels);
      const auto [oh, ow] = smart_resize(h.height, h.width, pc.factor(), pc.min_pixels, pc.max_pixels);
      tokens = (oh / pc.patch_size) * (ow / pc.patch_size) / (int64_t(pc.merge_size) * pc.merge_size);
      j.cost = decode_peak_bytes(h, oh, ow);
      if (io->decode_budget && j.cost > io->decode_budget->capacity())
        fail("image is {}x{}: decoding it would hold about {} MiB, more than the server's decode memory of {} MiB "
             "(--image-decode-memory)",
             h.width, h.height, (j.cost + (1 << 20) - 1) >> 20, io->decode_budget->capacity() >> 20);
    } catch (const Error& e) {
      bad_param(r.param, e.what());
    }
    prompt_len += tokens;
    // The same checks (and words) as once the images are decoded, made before: the header's size
    // is the decoded size.
    if (auto v = ctx.limits.check_prompt_length(prompt_len, P::kPrompt)) bad_param(prompt_param, v->message);
    judged.push_back(std::move(j));
  }
  if (max_tokens)
    if (auto v = ctx.limits.check_max_new_tokens(prompt_len, *max_tokens, name)) bad_param(max_param, v->message);
  for (size_t i = 0; i < refs.size(); ++i) {
    std::shared_ptr<void> share;
    if (io->decode_budget) {
      share = io->decode_budget->acquire(judged[i].cost, std::chrono::milliseconds(int64_t(io->decode_wait_s * 1000)));
      if (!share)
        throw ApiError(429,
                       fmt::format("The server is decoding other images (--image-decode-memory {} MiB in use); retry",
                                   io->decode_budget->capacity() >> 20),
                       refs[i].param, "rate_limit_error", "image_decode_busy");
    }
    try {
      spec.images.push_back(materialize_image(judged[i].bytes, pc, io->limits, &spec.image_times));
    } catch (const Error& e) {
      bad_param(refs[i].param, e.what());
    }
    std::string().swap(judged[i].bytes);
  }
  std::vector<int32_t> expanded;
  size_t k = 0;
  for (int32_t t : spec.prompts[0]) {
    if (t != pad) {
      expanded.push_back(t);
      continue;
    }
    expanded.insert(expanded.end(), size_t(spec.images[k++].tokens(io->preprocess)), pad);
  }
  spec.prompts[0] = std::move(expanded);
}

const json* present(const json& b, const char* name) {
  auto it = b.find(name);
  return it == b.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

void refuse_text_without_tokenizer(const std::string& param, const std::string& instead) {
  throw ApiError(400,
                 fmt::format("'{}': this server was started with --skip-tokenizer-init and has no tokenizer, so it "
                             "takes token ids only: {}",
                             param, instead),
                 param, "invalid_request_error", "no_tokenizer");
}

ParseContext without_length_bounds(const ParseContext& ctx) {
  ParseContext c = ctx;
  c.limits.context_length = std::numeric_limits<int32_t>::max();
  c.limits.kv_positions = 0;
  return c;
}

int64_t truncate_prompt_tokens_value(int64_t k, const RequestLimits& limits, const std::string& param) {
  if (k < -1 || k == 0)
    bad_param(param, fmt::format("'{}' must be -1 (the model's context length) or at least 1, got {}", param, k));
  if (k > limits.context_length)
    bad_param(param, fmt::format("'{}' {} is more than this model's maximum context length ({} tokens)", param, k,
                                 limits.context_length));
  return k == -1 ? limits.context_length : k;
}

bool is_completion_field(std::string_view name) { return find_field(completion_fields(), name) != nullptr; }
bool is_chat_field(std::string_view name) { return find_field(chat_fields(), name) != nullptr; }
bool is_generate_field(std::string_view name) { return find_field(generate_fields(), name) != nullptr; }
bool is_completion_id_field(std::string_view name) { return name == "prompt"; }
bool is_generate_id_field(std::string_view name) { return name == "input_ids"; }

GenSpec parse_completion_request(const json& b, const ParseContext& ctx, std::string_view raw_body) {
  ParseState st(ctx);
  GenSpec& spec = st.spec;
  spec.model = ctx.served_model_name;
  if (ctx.skip_tokenizer) refuse_text_without_tokenizer("prompt", "send them to POST /generate as 'input_ids'");
  if (ctx.sampling_defaults) ctx.sampling_defaults->apply(spec.base.params);
  spec.tokens_as_ids = ctx.tokens_as_ids;
  read_fields(b, completion_fields(), st);
  const json* prompt = st.prompt;
  if (!prompt) bad_param("prompt", "'prompt' is required");
  // A suffix makes each text prompt the prefix of a fill-in-the-middle prompt in the model's own format.
  const bool fim = !st.suffix.empty();
  if (fim) {
    if (!ctx.fim.found())
      bad_param("suffix", "'suffix' needs a model trained for fill-in-the-middle: this vocabulary has none of the "
                          "FIM token sets (<|fim_prefix|>, <fim_prefix>, <｜fim▁begin｜>, [PREFIX] / [SUFFIX])");
    if (spec.echo) bad_param("suffix", "'suffix' and 'echo' cannot be combined: the prompt is not the answer's start");
    if (st.truncate_prompt_tokens)
      bad_param("suffix", "'suffix' and 'truncate_prompt_tokens' cannot be combined: a cut would drop the prefix "
                          "marker");
  }
  auto add_text = [&](const json& t) {
    spec.prompt_texts.push_back(fim ? fim_prompt(ctx.fim, t.get<std::string>(), st.suffix) : t.get<std::string>());
    spec.prompts.push_back(encode_text(spec.prompt_texts.back(), ctx, true));
  };
  auto no_fim_ids = [&] {
    if (fim) bad_param("suffix", "'suffix' needs the prompt as text (its prefix), not token ids");
  };
  if (prompt->is_string()) {
    add_text(*prompt);
  } else if (is_packed_ids(*prompt)) {
    no_fim_ids();
    spec.prompts.push_back(token_ids(*prompt, "prompt", ctx));
    spec.prompt_texts.emplace_back();
  } else if (prompt->is_array() && !prompt->empty()) {
    if (int64_t(prompt->size()) > RequestLimits::kMaxPrompts && !(*prompt)[0].is_number())
      bad_param("prompt", fmt::format("at most {} prompts per request", RequestLimits::kMaxPrompts));
    const auto& first = (*prompt)[0];
    if (first.is_string()) {
      for (const auto& t : *prompt) {
        if (!t.is_string()) bad_param("prompt", "'prompt' mixes strings with other types");
        add_text(t);
      }
    } else if (first.is_number()) {
      no_fim_ids();
      spec.prompts.push_back(token_ids(*prompt, "prompt", ctx));
      spec.prompt_texts.emplace_back();
    } else if (is_id_array(first)) {
      no_fim_ids();
      for (const auto& p : *prompt) {
        if (!is_id_array(p)) bad_param("prompt", "'prompt' mixes token arrays with other types");
        spec.prompts.push_back(token_ids(p, "prompt", ctx));
        spec.prompt_texts.emplace_back();
      }
    } else {
      bad_param("prompt", "'prompt' must be a string, an array of strings, or token ids");
    }
  } else {
    bad_param("prompt", prompt->is_array() ? "'prompt' must not be an empty array"
                                           : "'prompt' must be a string, an array of strings, or token ids");
  }
  check_prompt_count(spec, "prompt");
  finish_stream_options(st);
  if (st.top_logprobs) {
    spec.logprobs = true;
    spec.base.return_logprob = true;
    spec.base.top_logprobs = int32_t(*st.top_logprobs);
  }
  if (st.best_of && *st.best_of != spec.n) bad_param("best_of", "'best_of' other than n is not supported");
  // echo + logprobs (OpenAI, vLLM): the logprobs cover the prompt's tokens too (the first has none).
  spec.base.prompt_logprobs = spec.echo && spec.logprobs;
  finish_prompt_logprobs(st);
  parse_logit_bias(b, spec.base, ctx);
  parse_output_constraint(b, raw_body, spec.base, ctx);
  check_choices(spec, "n");
  // max_tokens 0 with echo returns the prompt alone (with logprobs: scores it, as lm-eval-harness
  // asks); the engine still runs one step, whose token is dropped. Without echo there would be
  // nothing to return.
  std::optional<int64_t> max_tokens = st.max_tokens;
  if (max_tokens && *max_tokens == 0) {
    if (!spec.echo) bad_param("max_tokens", "'max_tokens' must be at least 1 (0 is allowed only with 'echo': true)");
    spec.prompt_only = true;
    max_tokens = 1;
  }
  truncate_prompts(st);
  attach_images(spec, {}, false, ctx, "prompt");
  check_lengths(spec, ctx, max_tokens, 16, DefaultMax::kFallback, "prompt", "max_tokens");
  check_min_tokens(st, "max_tokens");
  resolve_lora(st, std::max<size_t>(spec.prompts.size(), 1));
  return spec;
}

// The rendered chat cut just after the final message's text, as transformers' apply_chat_template
// does for continue_final_message: the text's last occurrence, stripped; kept with its trailing
// whitespace when the template kept that too. A content list continues its last text part.
std::string continue_final_text(const std::string& rendered, const nlohmann::ordered_json& content) {
  std::string message;
  if (content.is_string()) {
    message = content.get<std::string>();
  } else {
    bool found = false;
    if (content.is_array())
      for (auto it = content.rbegin(); it != content.rend() && !found; ++it)
        if (it->is_object() && it->contains("text") && (*it)["text"].is_string()) {
          message = (*it)["text"].get<std::string>();
          found = true;
        }
    if (!found)
      bad_param("continue_final_message", "'continue_final_message' needs text in the final message to continue");
  }
  // Python's str.strip() / lstrip(), as transformers cuts the rendered text.
  const std::string stripped = jinja::py_strip(message, nullptr, true, true);
  const size_t at = rendered.rfind(stripped);
  if (at == std::string::npos)
    bad_param("continue_final_message", "'continue_final_message': the chat template does not write the final "
                                        "message's text, so there is nothing to continue");
  const std::string lead_trimmed = jinja::py_strip(message, nullptr, true, false);
  if (std::string_view(rendered).substr(at, lead_trimmed.size()) == message)
    return rendered.substr(0, at + lead_trimmed.size());
  return rendered.substr(0, at + stripped.size());
}

std::string render_chat_prompt(const json& b, const ParseContext& ctx, std::vector<ImageRef>* images,
                               std::string_view raw_body, bool* generation_prompt) {
  using ojson = nlohmann::ordered_json;
  const json* msgs = present(b, "messages");
  if (!msgs) bad_param("messages", "'messages' is required");
  if (!msgs->is_array()) bad_param("messages", "'messages' must be an array");
  if (msgs->empty()) bad_param("messages", "'messages' must contain at least one message");
  // The template sees objects in the client's key order, as Hugging Face's renders them: `tojson` of
  // a tool schema or of tool-call arguments prints keys in that order, and `b` has them sorted.
  ojson written = raw_body.empty() ? ojson(nullptr) : original_subtree(raw_body, {});
  if (!written.is_object()) written = ojson(b);
  ojson clean = ojson::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    if (!m.is_object()) bad_param(fmt::format("messages[{}]", i), fmt::format("'messages[{}]' must be an object", i));
    const json* role = present(m, "role");
    if (!role || !role->is_string())
      bad_param(fmt::format("messages[{}].role", i), fmt::format("'messages[{}].role' is required", i));
    std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer")
      bad_param(fmt::format("messages[{}].role", i),
                fmt::format("'messages[{}].role' must be system, developer, user, assistant or tool, got '{}'", i, r));
    const json* content = present(m, "content");
    if (!content && r != "assistant")
      bad_param(fmt::format("messages[{}].content", i), fmt::format("'messages[{}].content' is required", i));
    ojson out = written["messages"][i];
    out["content"] = ojson(content ? message_content(*content, i, images) : json(std::string()));
    // OpenAI's developer messages are what chat templates call system (the Responses route maps them
    // the same way); a template that knows no developer role would drop the instruction silently.
    if (r == "developer") out["role"] = "system";
    // gpt-oss's chat template reads an assistant turn's analysis from `thinking` (and writes it before
    // that turn's tool calls, where the model expects its reasoning back); clients send the
    // reasoning_content they were given (or vLLM's `reasoning`), as llama.cpp maps it for gpt-oss.
    if (r == "assistant" && ctx.reasoning_parser == ReasoningParser::kGptOss && !out.contains("thinking"))
      for (const char* k : {"reasoning_content", "reasoning"})
        if (out.contains(k) && out[k].is_string()) {
          out["thinking"] = out[k];
          break;
        }
    // A call's arguments reach the template as the object, not OpenAI's JSON text, as vLLM and SGLang hand
    // them over (transformers documents objects; templates iterate them with |items, or print them with
    // tojson, which would quote the text). Text that is not a JSON object stays text.
    if (r == "assistant" && out.contains("tool_calls") && out["tool_calls"].is_array())
      for (ojson& c : out["tool_calls"]) {
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
        ojson& f = c["function"];
        if (!f.contains("arguments") || !f["arguments"].is_string()) continue;
        ojson args = ojson::parse(f["arguments"].get<std::string>(), nullptr, false);
        if (args.is_object()) f["arguments"] = std::move(args);
      }
    clean.push_back(std::move(out));
  }
  // Before the template sees a content list it may not expect.
  if (images) refuse_images_without_vision(*images, ctx);
  // vLLM's chat_template (or chat_template_kwargs.chat_template): a template of the request's own,
  // only where the operator trusts clients with it (--trust-request-chat-template, as vLLM). The
  // renderer's step, output and depth limits bound what a hostile template can cost.
  std::optional<ChatTemplate> own;
  {
    const json* t = present(b, "chat_template");
    const json* kw = present(b, "chat_template_kwargs");
    const json* kw_t = kw && kw->is_object() ? present(*kw, "chat_template") : nullptr;
    const std::string name = t ? "chat_template" : "chat_template_kwargs.chat_template";
    if (t && kw_t) bad_param(name, "give the request's chat template once: 'chat_template' or 'chat_template_kwargs.chat_template'");
    if (!t) t = kw_t;
    if (t) {
      if (!ctx.trust_request_chat_template)
        bad_param(name, fmt::format("'{}' is refused: the server does not run templates sent by clients (start it "
                                    "with --trust-request-chat-template to allow them)", name));
      if (!t->is_string() || t->get<std::string>().empty())
        bad_param(name, fmt::format("'{}' must be a non-empty string (a Jinja template)", name));
      if (t->get<std::string>().size() > kMaxRequestChatTemplateBytes)
        bad_param(name, fmt::format("'{}' is longer than {} bytes", name, kMaxRequestChatTemplateBytes));
      try {
        own.emplace(t->get<std::string>());
      } catch (const Error& e) {
        bad_param(name, fmt::format("'{}' is not a template this server can read: {}", name, e.what()));
      }
    }
  }
  if (!own && !ctx.chat_template)
    throw ApiError(400,
                   "This model has no chat template, so /v1/chat/completions cannot format messages. Start the "
                   "server with --chat-template FILE, or use /v1/completions",
                   "messages", "invalid_request_error", "no_chat_template");
  ojson context;
  // chat_template_kwargs (SGLang / vLLM): extra template variables, e.g. {"enable_thinking": false}.
  // They may set add_generation_prompt (false: the prompt ends after the last message).
  if (const json* kw = present(b, "chat_template_kwargs")) {
    if (!kw->is_object()) bad_param("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (const auto& [k, v] : written["chat_template_kwargs"].items())
      if (k != "messages" && k != "tools" && k != "chat_template") context[k] = v;
  }
  // OpenAI's reasoning_effort, passed on as vLLM passes it: the template variable of that name (the
  // templates with reasoning levels, gpt-oss's among them, branch on it) and enable_thinking, off for
  // "none" and on for a level (Qwen3's switch). chat_template_kwargs may set either, if it agrees.
  std::string effort;
  if (const json* e = present(b, "reasoning_effort")) {
    static const std::set<std::string> kLevels = {"none", "minimal", "low", "medium", "high", "xhigh"};
    if (!e->is_string() || !kLevels.count(e->get<std::string>()))
      bad_param("reasoning_effort", "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh");
    effort = e->get<std::string>();
    auto pass = [&](const char* var, const ojson& v) {
      if (!context.contains(var)) {
        context[var] = v;
      } else if (context[var] != v) {
        bad_param("reasoning_effort", fmt::format("'reasoning_effort' \"{}\" contradicts chat_template_kwargs.{} ({})",
                                                  effort, var, context[var].dump()));
      }
    };
    pass("reasoning_effort", effort);
    pass("enable_thinking", effort != "none");
  }
  // vLLM's chat and /tokenize take add_generation_prompt as a field of its own.
  if (const json* g = present(b, "add_generation_prompt")) {
    if (!g->is_boolean()) bad_param("add_generation_prompt", "'add_generation_prompt' must be a boolean");
    context["add_generation_prompt"] = g->get<bool>();
  }
  // continue_final_message (vLLM, SGLang): the prompt ends inside the last message, which the model
  // continues ("prefill"), cut as transformers' apply_chat_template cuts it (continue_final_text).
  bool continue_final = false;
  if (const json* c = present(b, "continue_final_message")) {
    if (!c->is_boolean()) bad_param("continue_final_message", "'continue_final_message' must be a boolean");
    continue_final = c->get<bool>();
  }
  if (continue_final) {
    if (context.contains("add_generation_prompt") && context["add_generation_prompt"] == ojson(true))
      bad_param("continue_final_message",
                "'continue_final_message' and 'add_generation_prompt' cannot both be true: the prompt either "
                "opens a new assistant message or continues the last one");
    context["add_generation_prompt"] = false;
  }
  const ojson final_content = clean.back()["content"];
  if (tools_for_template(b)) context["tools"] = written["tools"];
  // vLLM's documents (transformers' apply_chat_template(documents=...)): retrieval results for
  // templates that place them (Command-R, Granite); a list of objects of strings.
  if (const json* docs = present(b, "documents")) {
    if (!docs->is_array()) bad_param("documents", "'documents' must be an array of objects of strings");
    for (size_t i = 0; i < docs->size(); ++i) {
      const json& d = (*docs)[i];
      if (!d.is_object()) bad_param("documents", fmt::format("'documents[{}]' must be an object of strings", i));
      for (const auto& [k, v] : d.items())
        if (!v.is_string()) bad_param("documents", fmt::format("'documents[{}].{}' must be a string", i, k));
    }
    context["documents"] = written["documents"];
  }
  context["messages"] = std::move(clean);
  if (!context.contains("add_generation_prompt")) context["add_generation_prompt"] = true;
  if (generation_prompt) *generation_prompt = context["add_generation_prompt"] != ojson(false);
  context["bos_token"] = ctx.tok ? ctx.tok->bos_token() : "";
  context["eos_token"] = ctx.tok ? ctx.tok->eos_token() : "";
  auto render = [&](const ojson& c) {
    try {
      return own ? own->render(c) : ctx.chat_template->render(c);
    } catch (const Error& e) {
      throw ApiError(400, fmt::format("The chat template could not format these messages: {}", e.what()), "messages");
    }
  };
  std::string text = render(context);
  // A level the template does not read would be ignored in silence: the prompt without the two
  // variables must differ. "none" may also be met by a model that does not reason at all.
  if (!effort.empty()) {
    ojson without = context;
    without.erase("reasoning_effort");
    without.erase("enable_thinking");
    if (render(without) == text && (effort != "none" || ctx.reasoning_parser != ReasoningParser::kNone))
      unsupported("reasoning_effort",
                  effort == "none"
                      ? "this model's chat template cannot turn thinking off (it reads neither "
                        "reasoning_effort nor enable_thinking)"
                      : fmt::format("\"{}\" would change nothing: this model's chat template has no "
                                    "reasoning levels (it reads no reasoning_effort); only \"none\", "
                                    "which turns thinking off, or thinking_token_budget can be asked of it",
                                    effort));
  }
  return continue_final ? continue_final_text(text, final_content) : text;
}

GenSpec parse_chat_request(const json& b, const ParseContext& ctx, std::string_view raw_body) {
  ParseState st(ctx);
  GenSpec& spec = st.spec;
  spec.model = ctx.served_model_name;
  if (ctx.skip_tokenizer)
    refuse_text_without_tokenizer("messages", "chat needs a template and a tokenizer; send the prompt's ids to POST "
                                              "/generate as 'input_ids'");
  if (ctx.sampling_defaults) ctx.sampling_defaults->apply(spec.base.params);
  spec.tokens_as_ids = ctx.tokens_as_ids;
  read_fields(b, chat_fields(), st);
  std::vector<ImageRef> image_refs;
  bool generation_prompt = true;
  std::string text = render_chat_prompt(b, ctx, &image_refs, raw_body, &generation_prompt);
  // vLLM's echo: an answer that continues the final assistant message (no new turn opened) starts
  // with that message's text. (vLLM also echoes another role's message under that role; answers
  // here are always the assistant's, so only the assistant's own text is echoed.)
  if (const json* e = present(b, "echo"); e && boolean(*e, "echo") && !generation_prompt) {
    const json& last = b["messages"].back();
    if (last.value("role", "") == "assistant" && last.contains("content")) {
      const json& c = last["content"];
      if (c.is_string()) {
        spec.chat_echo = c.get<std::string>();
      } else if (c.is_array()) {
        for (const json& part : c)
          if (part.is_object() && part.value("type", "") == "text" && part.contains("text") && part["text"].is_string())
            spec.chat_echo += part["text"].get<std::string>();
      }
    }
  }
  // The template already spells BOS where the model wants it.
  spec.prompts.push_back(encode_text(text, ctx, false));
  spec.prompt_texts.push_back(text);
  finish_stream_options(st);
  spec.logprobs = st.logprobs;
  if (st.top_logprobs) {
    if (!spec.logprobs) bad_param("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
    spec.base.top_logprobs = int32_t(*st.top_logprobs);
  }
  spec.base.return_logprob = spec.logprobs;
  finish_prompt_logprobs(st);
  parse_logit_bias(b, spec.base, ctx);
  // Where the template leaves the reasoning block: Qwen3 closes an empty one when thinking is off.
  {
    const size_t end = text.find_last_not_of(" \t\r\n");
    const std::string_view tail = std::string_view(text).substr(0, end == std::string::npos ? 0 : end + 1);
    spec.reasoning_open = tail.size() >= 7 && tail.substr(tail.size() - 7) == "<think>";
    spec.reasoning_closed = tail.size() >= 8 && tail.substr(tail.size() - 8) == "</think>";
  }
  // A template that opened <think> leaves the model reasoning: the constraint holds the answer after
  // it (what the reasoning parser returns as content), not the thinking. gpt-oss writes its analysis
  // (and preambles) as messages of their own: the constraint holds its final message.
  constrain::ReasoningPrefix prefix = constrain::ReasoningPrefix::kNone;
  if (ctx.reasoning_parser == ReasoningParser::kGptOss && spec.separate_reasoning)
    prefix = constrain::ReasoningPrefix::kHarmony;
  else if (ctx.reasoning_parser != ReasoningParser::kNone && spec.separate_reasoning && spec.reasoning_open)
    prefix = constrain::ReasoningPrefix::kOpenThink;
  parse_output_constraint(b, raw_body, spec.base, ctx, prefix);
  spec.base.think_budget = resolve_think_budget(ctx.think, ctx.reasoning_parser != ReasoningParser::kNone,
                                                st.think_budget, st.think_budget_param, spec.reasoning_open,
                                                spec.reasoning_closed);
  parse_tools(b, raw_body, spec, ctx);
  // gpt-oss: the harmony reader finds the messages by their tags, special tokens the default decoding
  // drops (which would run the channels' names into the text).
  if (ctx.reasoning_parser == ReasoningParser::kGptOss && spec.separate_reasoning && !b.contains("skip_special_tokens"))
    spec.skip_special_tokens = false;
  check_choices(spec, "n");
  const bool completion_named = st.max_completion_tokens.has_value();
  const std::optional<int64_t> max_given = completion_named ? st.max_completion_tokens : st.max_tokens;
  const std::string max_param = completion_named ? "max_completion_tokens" : "max_tokens";
  // An image's tokens are one run the vision tower fills whole: a cut through them has no meaning.
  if (st.truncate_prompt_tokens && !image_refs.empty())
    bad_param("truncate_prompt_tokens", "'truncate_prompt_tokens' is not supported for messages with images");
  truncate_prompts(st);
  attach_images(spec, image_refs, false, ctx, "messages", max_given, max_param);
  check_lengths(spec, ctx, max_given, 0, DefaultMax::kRest, "messages", max_param);
  check_min_tokens(st, max_param);
  resolve_lora(st, std::max<size_t>(spec.prompts.size(), 1));
  return spec;
}

// SGLang's token_ids_logprob: one list of ids (for every prompt) or one list per prompt of a batch.
// Needs return_logprob (SGLang reports them with the other logprobs): at every output position, and
// with logprob_start_len at the prompt's positions past it too (input_token_ids_logprobs).
void parse_token_ids_logprob(const json& v, GenSpec& spec, const ParseContext& ctx) {
  const std::string name = "token_ids_logprob";
  if (!v.is_array()) bad_param(name, fmt::format("'{}' must be an array of token ids or an array of such arrays", name));
  if (v.empty()) return;
  if (!spec.logprobs) bad_param(name, fmt::format("'{}' requires 'return_logprob' to be true", name));
  const size_t prompts = std::max<size_t>(spec.prompts.size(), 1);
  auto one = [&](const json& ids, const std::string& param) {
    if (!ids.is_array() || ids.empty()) bad_param(param, fmt::format("'{}' must be a non-empty array of token ids", param));
    if (ids.size() > size_t(ctx.limits.vocab > 0 ? ctx.limits.vocab : 1 << 20))
      bad_param(param, fmt::format("'{}' names {} ids; the vocabulary has {}", param, ids.size(), ctx.limits.vocab));
    return token_ids(ids, param, ctx);
  };
  if (v[0].is_array()) {
    if (v.size() != prompts)
      bad_param(name, fmt::format("'{}' has {} lists for {} prompt(s): give one list per prompt, or one list of ids for "
                                  "all", name, v.size(), prompts));
    for (size_t i = 0; i < v.size(); ++i) spec.token_ids_logprob.push_back(one(v[i], fmt::format("{}[{}]", name, i)));
  } else {
    spec.token_ids_logprob.assign(prompts, one(v, name));
  }
}

GenSpec parse_generate_request(const json& b, const ParseContext& ctx, std::string_view raw_body) {
  ParseState st(ctx);
  GenSpec& spec = st.spec;
  spec.model = ctx.served_model_name;
  if (ctx.preferred_sampling) ctx.preferred_sampling->apply(spec.base.params);
  read_fields(b, generate_fields(), st);
  if (st.sampling_params) {
    read_fields(*st.sampling_params, generate_sampling_fields(), st, "sampling_params.");
    if (ctx.skip_tokenizer) {
      // Text rules need the vocabulary's text: stop strings to match, grammars to compile masks from.
      if (!st.spec.stop.empty()) refuse_text_without_tokenizer("sampling_params.stop", "use 'stop_token_ids'");
      if (st.spec.stop_regex)
        refuse_text_without_tokenizer("sampling_params.stop_regex", "use 'stop_token_ids' (it is matched on the output's text)");
      for (const char* k : {"regex", "json_schema", "ebnf"})
        if (auto it = st.sampling_params->find(k); it != st.sampling_params->end() && !it->is_null())
          refuse_text_without_tokenizer(std::string("sampling_params.") + k,
                                        "constrained decoding needs the vocabulary's text");
    }
    parse_logit_bias(*st.sampling_params, spec.base, ctx);
    parse_sglang_constraint(*st.sampling_params, raw_body, spec.base, ctx);
  }
  const json* text = st.text;
  const json* ids = st.input_ids;
  const json* embeds = st.input_embeds;
  if (int(text != nullptr) + int(ids != nullptr) + int(embeds != nullptr) != 1)
    bad_param("text", "give exactly one of 'text', 'input_ids' or 'input_embeds'");
  if (text && ctx.skip_tokenizer) refuse_text_without_tokenizer("text", "send 'input_ids'");
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
    if (int64_t(spec.prompt_texts.size()) > RequestLimits::kMaxPrompts)
      bad_param("text", fmt::format("at most {} prompts per request", RequestLimits::kMaxPrompts));
    for (const auto& t : spec.prompt_texts) spec.prompts.push_back(encode_text(t, ctx, true));
  } else if (ids) {
    if (is_packed_ids(*ids)) {
      spec.prompts.push_back(token_ids(*ids, "input_ids", ctx));
    } else if (!ids->is_array() || ids->empty()) {
      bad_param("input_ids", "'input_ids' must be a non-empty array");
    } else if (is_id_array((*ids)[0])) {
      spec.batched = true;
      if (int64_t(ids->size()) > RequestLimits::kMaxPrompts)
        bad_param("input_ids", fmt::format("at most {} prompts per request", RequestLimits::kMaxPrompts));
      for (const auto& p : *ids) {
        if (!is_id_array(p)) bad_param("input_ids", "'input_ids' mixes token arrays with other types");
        spec.prompts.push_back(token_ids(p, "input_ids", ctx));
      }
    } else {
      spec.prompts.push_back(token_ids(*ids, "input_ids", ctx));
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
  check_prompt_count(spec, text ? "text" : "input_ids");
  spec.logprobs = st.logprobs;
  if (st.top_logprobs) spec.base.top_logprobs = int32_t(*st.top_logprobs);
  spec.base.return_logprob = spec.logprobs;
  if (const json* rid = st.rid) {
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
    // SGLang names a batch's requests after one string rid: "<rid>_0", "<rid>_1", ...
    if (rid->is_string() && spec.batched) {
      const std::string base = spec.rids[0];
      spec.rids.clear();
      for (size_t i = 0; i < want; ++i) spec.rids.push_back(fmt::format("{}_{}", base, i));
    }
    if (spec.rids.size() != want) bad_param("rid", fmt::format("'rid' must name {} request(s)", want));
  }
  check_choices(spec, "n");
  std::vector<ImageRef> image_refs;
  if (const json* im = st.image_data) {
    auto add = [&](const json& v, const std::string& param) {
      if (!v.is_string()) bad_param(param, fmt::format("'{}' must be a string (a data: URL, base64, or an http(s) URL)", param));
      image_refs.push_back({v.get<std::string>(), param});
    };
    if (im->is_array()) {
      for (size_t i = 0; i < im->size(); ++i) add((*im)[i], fmt::format("image_data[{}]", i));
    } else {
      add(*im, "image_data");
    }
  }
  const std::string prompt_param = text ? "text" : ids ? "input_ids" : "input_embeds";
  // SGLang: max_new_tokens null is "up to the context", absent 128 or what the context leaves; 0 runs the prompt alone
  // (with logprob_start_len: scores it), finish_reason length.
  std::optional<int64_t> max_new = st.max_new_tokens;
  bool to_context = false;
  if (st.sampling_params)
    if (auto it = st.sampling_params->find("max_new_tokens"); it != st.sampling_params->end() && it->is_null())
      to_context = true;
  if (max_new && *max_new == 0) {
    spec.prompt_only = true;
    max_new = 1;
  }
  if (st.logprob_start_len && *st.logprob_start_len >= 0) {
    spec.logprob_start_len = *st.logprob_start_len;
    if (spec.prompts.empty()) bad_param("logprob_start_len", "'logprob_start_len' needs token prompts ('text' or "
                                                             "'input_ids'), not 'input_embeds'");
    for (const auto& p : spec.prompts)
      if (spec.logprob_start_len >= int64_t(p.size()))
        bad_param("logprob_start_len", fmt::format("'logprob_start_len' {} must be less than the prompt's length {}",
                                                   spec.logprob_start_len, p.size()));
    // Positions after the start need the prompt's own logprobs; the start itself has none.
    if (spec.logprobs)
      for (const auto& p : spec.prompts) spec.base.prompt_logprobs |= spec.logprob_start_len + 1 < int64_t(p.size());
  }
  if (const json* t = st.token_ids_logprob) parse_token_ids_logprob(*t, spec, ctx);
  // (An absent or null max_new_tokens is what the context leaves, at most: checked only when given.)
  attach_images(spec, image_refs, true, ctx, prompt_param, max_new, "max_new_tokens");
  check_lengths(spec, ctx, max_new, 128, to_context ? DefaultMax::kRest : DefaultMax::kFallbackWithinRest, prompt_param,
                "max_new_tokens");
  check_min_tokens(st, "max_new_tokens");
  resolve_lora(st, std::max<size_t>(spec.prompts.size(), 1));
  return spec;
}

}  // namespace dpserve
