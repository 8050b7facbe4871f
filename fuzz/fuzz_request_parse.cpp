// HTTP JSON bodies -> validated generation specs (src/server/request_parse.h), with the real Qwen3
// tokenizer and chat template. Only ApiError may escape; an accepted spec must satisfy the limits.
// With the routes' token-id fields parsed straight into int32 (JsonLimits::id_field), a body must
// give the same prompts, or the same error, as parsed into a plain DOM.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/check.h"
#include "fuzz_util.h"
#include "server/json_body.h"
#include "server/messages_request.h"
#include "server/openai_error.h"
#include "server/request_parse.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

using dpserve::ApiError;
using dpserve::GenSpec;
using dpserve::ParseContext;

const ParseContext& context() {
  static const std::unique_ptr<dpserve::Tokenizer> tok =
      dpserve::Tokenizer::load(dpserve::fuzz::shared_file("tokenizers/qwen3"));
  static const ParseContext ctx = [] {
    ParseContext c;
    c.tok = tok.get();
    // A small context, so the length checks are reachable with short inputs.
    c.limits = dpserve::RequestLimits{.vocab = tok->vocab_size(), .context_length = 512, .hidden = 4};
    c.served_model_name = "fuzz-model";
    c.chat_template = std::make_shared<dpserve::ChatTemplate>(tok->chat_template().value());
    // The reasoning parser on, so thinking budgets (and constraints after an opened <think>) resolve.
    c.reasoning_parser = dpserve::ReasoningParser::kQwen3;
    c.think = dpserve::make_think_budget_config(*tok, -1, "");
    c.fim = dpserve::find_fim_format(*tok);  // Qwen's: completions' suffix builds FIM prompts
    return c;
  }();
  return ctx;
}

void check_error(const ApiError& e) {
  FUZZ_EXPECT(e.status() == 400 || e.status() == 404 || e.status() == 413);
  FUZZ_EXPECT(std::string(e.what()).size() > 0);
  FUZZ_EXPECT(e.body().contains("error"));
}

// What the engine relies on for every accepted request.
void check_spec(const GenSpec& s, const ParseContext& ctx) {
  using dpserve::RequestLimits;
  FUZZ_EXPECT(s.n >= 1 && s.n <= RequestLimits::kMaxN);
  FUZZ_EXPECT(int64_t(s.prompts.size()) <= RequestLimits::kMaxPrompts);
  FUZZ_EXPECT(std::max<int64_t>(int64_t(s.prompts.size()), 1) * s.n <= RequestLimits::kMaxChoices);
  FUZZ_EXPECT(!s.prompts.empty() || s.input_embeds_rows > 0);
  int64_t longest = s.input_embeds_rows;
  for (const auto& p : s.prompts) {
    FUZZ_EXPECT(!p.empty());
    for (int32_t id : p) FUZZ_EXPECT(id >= 0 && id < ctx.tok->vocab_size());
    longest = std::max<int64_t>(longest, int64_t(p.size()));
  }
  if (s.input_embeds_rows > 0)
    FUZZ_EXPECT(int64_t(s.input_embeds.size()) == s.input_embeds_rows * ctx.limits.hidden);
  const auto& p = s.base.params;
  FUZZ_EXPECT(p.max_new_tokens >= 1 && longest + p.max_new_tokens <= ctx.limits.context_length);
  FUZZ_EXPECT(p.temperature >= 0 && p.temperature <= 2);
  FUZZ_EXPECT(p.top_p > 0 && p.top_p <= 1);
  FUZZ_EXPECT(p.top_k == -1 || p.top_k >= 1);
  for (int32_t id : p.stop_token_ids) FUZZ_EXPECT(id >= 0 && id < ctx.tok->vocab_size());
  FUZZ_EXPECT(s.stop.size() <= 4);
  for (const auto& st : s.stop) FUZZ_EXPECT(!st.empty());
  FUZZ_EXPECT(s.base.top_logprobs >= 0 && s.base.top_logprobs <= 20);
  if (const auto& t = s.base.think_budget; t.active())
    FUZZ_EXPECT(t.open_id >= 0 && t.close_id >= 0 && !t.forced.empty() && t.forced.back() == t.close_id);
  // And what the engine itself will check when each choice is enqueued.
  for (size_t i = 0; i < std::max<size_t>(s.prompts.size(), 1); ++i) {
    dpserve::Request r = s.base;
    if (s.prompts.empty()) {
      r.input_embeds = s.input_embeds;
      r.input_embeds_rows = s.input_embeds_rows;
    } else {
      r.input_ids = s.prompts[i];
    }
    FUZZ_EXPECT(!ctx.limits.check(r));
  }
}

// A parser's result as text: the prompts it took, or its error (status and body).
template <typename F>
std::string outcome(F&& parse) {
  try {
    GenSpec s = parse();
    std::string out = "ok";
    for (const auto& p : s.prompts) {
      out += '|';
      for (int32_t id : p) out += std::to_string(id) + ',';
    }
    return out;
  } catch (const ApiError& e) {
    return "error " + std::to_string(e.status()) + " " + e.body().dump();
  }
}

}  // namespace

// The tokenizer loads once, before the first input (it is slow under ASan).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  context();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ParseContext& ctx = context();
  const std::string body(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  try {
    j = dpserve::parse_json_body(body);
  } catch (const ApiError& e) {
    check_error(e);
    return 0;
  }
  // One body through every endpoint's parser: each must accept it or answer with an ApiError.
  // The parsers' own type (with the raw body, from which schemas are read in the client's key order);
  // calling them through a pointer of another type is undefined behaviour.
  using Parser = GenSpec (*)(const nlohmann::json&, const ParseContext&, std::string_view);
  for (Parser parse : {&dpserve::parse_chat_request, &dpserve::parse_completion_request,
                       &dpserve::parse_generate_request}) {
    try {
      check_spec(parse(j, ctx, body), ctx);
    } catch (const ApiError& e) {
      check_error(e);
    }
  }
  // Anthropic's Messages body, for /v1/messages and for count_tokens (converted to a chat request).
  for (bool count_tokens : {false, true}) {
    try {
      check_spec(dpserve::parse_messages_request(j, body, ctx, count_tokens).spec, ctx);
    } catch (const ApiError& e) {
      check_error(e);
    }
  }
  // The same body with the route's id field packed: the same outcome. (The DOM was parsed within
  // its memory budget, which packed ids, charged 4 bytes each where the DOM charges 16, stay within.)
  using IdField = bool (*)(std::string_view);
  const std::pair<Parser, IdField> packed_routes[] = {{&dpserve::parse_completion_request, &dpserve::is_completion_id_field},
                                                      {&dpserve::parse_generate_request, &dpserve::is_generate_id_field}};
  for (const auto& route : packed_routes) {
    const Parser parse = route.first;  // a plain variable: lambdas cannot capture structured bindings (clang 14)
    dpserve::JsonLimits lim;
    lim.id_field = route.second;
    nlohmann::json packed;
    try {
      packed = dpserve::parse_json_body(body, lim);
    } catch (const ApiError&) {
      FUZZ_EXPECT(false);  // the DOM parse of this body succeeded
    }
    FUZZ_EXPECT(outcome([&] { return parse(packed, ctx, body); }) == outcome([&] { return parse(j, ctx, body); }));
  }
  return 0;
}
