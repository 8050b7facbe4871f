// The HTTP frontend's translation pieces, without sockets or the engine: request parsing and
// validation (with the real stories260K tokenizer), stop strings, SSE framing, error bodies, metrics.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <fstream>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"
#include "core/shared_dir.h"
#include "server/embeddings_request.h"
#include "server/fim_prompt.h"
#include "server/json_body.h"
#include "server/lora_adapters.h"
#include "server/metrics.h"
#include "server/openai_error.h"
#include "server/request_parse.h"
#include "server/sse.h"
#include "server/stop_regex.h"
#include "server/stop_strings.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {
namespace {

using json = nlohmann::json;

const Tokenizer& stories_tok() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::string path = shared_dir() + "/models/stories260K/tok512.bin";
    if (!std::filesystem::exists(path)) {
      ADD_FAILURE() << "missing " << path << " (shared reference data)";
      std::abort();
    }
    return Tokenizer::load(path);
  }();
  return *tok;
}

ParseContext stories_ctx() {
  ParseContext c;
  c.tok = &stories_tok();
  c.limits = RequestLimits{.vocab = stories_tok().vocab_size(), .context_length = 512, .hidden = 0};
  c.served_model_name = "stories260K";
  return c;
}

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(DPSERVE_E2E_FIXTURES) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `f` and returns the ApiError it must throw.
template <typename F>
ApiError expect_api_error(F&& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(0, "");
}

TEST(StopMatcher, FindsStopSplitAcrossPiecesAndDropsIt) {
  StopMatcher m({"o w"});
  std::string out;
  out += m.feed("Hel");
  out += m.feed("lo ");  // "o " could start "o w": held back
  EXPECT_EQ(out, "Hell");
  out += m.feed("wor");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "o w");
  EXPECT_EQ(out, "Hell");
  EXPECT_EQ(m.feed("ld"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, ReleasesHeldTextWhenTheStopDoesNotFollow) {
  StopMatcher m({"bc"});
  EXPECT_EQ(m.feed("ab"), "a");
  EXPECT_EQ(m.feed("d"), "bd");
  EXPECT_EQ(m.feed("xb"), "x");
  EXPECT_EQ(m.flush(), "b");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"cd", "b"});
  EXPECT_EQ(m.feed("abcd"), "a");
  EXPECT_EQ(m.matched_stop(), "b");
}

// Several stops, each a possible start of the tail: the longest such tail is held back, whichever
// stop it belongs to. "zab" ends with "ab" (a start of "abc") and with "b" (a start of "bz"); the
// text "zabc" contains "abc" at 1, so only "z" may ever be released.
TEST(StopMatcher, HoldsTheLongestPossibleStartOverAllStops) {
  StopMatcher m({"abc", "bz"});
  std::string out = m.feed("zab");
  out += m.feed("c");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "abc");
  EXPECT_EQ(out, "z");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.feed("abc"), "abc");
  EXPECT_EQ(m.flush(), "");
}

// Tokens of a real tokenizer, decoded one at a time, with a stop string that spans several tokens.
TEST(StopMatcher, StreamedTokensOfRealTokenizer) {
  const Tokenizer& tok = stories_tok();
  const std::string text = "Once upon a time, there was a little girl named Lily. She liked to play.";
  std::vector<int32_t> ids = tok.encode(text, true);
  ASSERT_GT(ids.size(), 10u);
  const std::string full = tok.decode(ids, true);
  const std::string stop = "was a lit";
  const size_t at = full.find(stop);
  ASSERT_NE(at, std::string::npos);
  IncrementalDecoder dec(tok, true);
  StopMatcher m({stop});
  std::string out;
  for (int32_t id : ids) {
    out += m.feed(dec.push(id));
    if (m.matched()) break;
  }
  if (!m.matched()) out += m.feed(dec.flush()) + m.flush();
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(out, full.substr(0, at));
}

TEST(ParseJson, MalformedInvalidUtf8AndNonObject) {
  auto e1 = expect_api_error([] { parse_json_body("{\"prompt\": "); });
  EXPECT_EQ(e1.status(), 400);
  EXPECT_EQ(e1.code(), "invalid_json");
  auto e2 = expect_api_error([] { parse_json_body(std::string("{\"prompt\": \"a\xff\xfe b\"}")); });
  EXPECT_EQ(e2.status(), 400);
  EXPECT_EQ(e2.code(), "invalid_utf8");
  auto e3 = expect_api_error([] { parse_json_body("[1, 2]"); });
  EXPECT_EQ(e3.status(), 400);
  auto e4 = expect_api_error([] { parse_json_body(""); });
  EXPECT_EQ(e4.status(), 400);
  EXPECT_EQ(parse_json_body("{\"a\": 1}")["a"], 1);
}

TEST(ParseJson, LimitsAreEnforcedWhileParsing) {
  // An unknown top-level key stops the parse at the key: the broken value after it is never read.
  JsonLimits known;
  known.known_field = [](std::string_view k) { return k == "prompt"; };
  auto e1 = expect_api_error([&] { parse_json_body("{\"prompt\": 1, \"x\": [[[ broken", known); });
  EXPECT_EQ(e1.status(), 400);
  EXPECT_EQ(e1.param(), "x");
  EXPECT_EQ(e1.code(), "unknown_parameter");
  // Nested keys are the route's business, not the parser's.
  EXPECT_EQ(parse_json_body("{\"prompt\": {\"x\": 1}}", known)["prompt"]["x"], 1);
  // 64 levels parse, 65 do not.
  std::string deep64 = "{\"a\": " + std::string(63, '[') + std::string(63, ']') + "}";
  std::string deep65 = "{\"a\": " + std::string(64, '[') + std::string(64, ']') + "}";
  EXPECT_NO_THROW(parse_json_body(deep64));
  EXPECT_EQ(expect_api_error([&] { parse_json_body(deep65); }).status(), 400);
  // The memory budget: 16 MiB plus 4 bytes per body byte by default; here a small floor.
  JsonLimits small;
  small.memory_floor = 1 << 20;
  std::string many = "{\"a\": [";
  for (int i = 0; i < 20000; ++i) many += "[],";
  many += "[]]}";
  auto e2 = expect_api_error([&] { parse_json_body(many, small); });
  EXPECT_EQ(e2.status(), 413);
  EXPECT_EQ(e2.code(), "body_too_complex");
  EXPECT_NO_THROW(parse_json_body(many));  // within the default floor
  // A deadline already past, or a client gone, stops the parse (checked every few thousand values).
  std::string big = "{\"a\": [";
  for (int i = 0; i < 20000; ++i) big += "1,";
  big += "1]}";
  JsonLimits late;
  late.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  EXPECT_EQ(expect_api_error([&] { parse_json_body(big, late); }).status(), 408);
  JsonLimits gone;
  gone.cancelled = [] { return true; };
  EXPECT_EQ(expect_api_error([&] { parse_json_body(big, gone); }).status(), 499);
}

// Token-id arrays under a route's id fields are parsed straight into int32 (a binary value of
// json_body's own subtype); anything else there stays a DOM array.
TEST(ParseJson, IdFieldsHoldPackedInt32Arrays) {
  JsonLimits lim;
  lim.id_field = is_generate_id_field;
  json j = parse_json_body(R"({"input_ids": [5, 0, -3, 2147483647], "x": [1, 2]})", lim);
  ASSERT_TRUE(is_packed_ids(j["input_ids"]));
  EXPECT_EQ(packed_ids(j["input_ids"]), (std::vector<int32_t>{5, 0, -3, 2147483647}));
  EXPECT_TRUE(j["x"].is_array());  // not an id field
  j = parse_json_body(R"({"input_ids": [[1, 2], [3], []]})", lim);
  ASSERT_TRUE(j["input_ids"].is_array());
  EXPECT_TRUE(is_packed_ids(j["input_ids"][0]) && is_packed_ids(j["input_ids"][1]));
  EXPECT_TRUE(j["input_ids"][2].is_array());  // empty: a DOM array
  // Anything but int32 values leaves the DOM array it always was, with the ids read so far.
  for (const char* body : {R"({"input_ids": [1, 2, 1.5]})", R"({"input_ids": [1, 2, 2147483648]})",
                           R"({"input_ids": [1, 2, "a"]})", R"({"input_ids": [1, 2, [3]]})"}) {
    j = parse_json_body(body, lim);
    ASSERT_TRUE(j["input_ids"].is_array()) << body;
    EXPECT_EQ(j["input_ids"].size(), 3u) << body;
    EXPECT_EQ(j["input_ids"][1], 2) << body;
  }
  // Three levels deep is no id array.
  EXPECT_TRUE(parse_json_body(R"({"input_ids": [[[1]]]})", lim)["input_ids"][0][0].is_array());
  // Without id fields nothing is packed, and no JSON text makes a packed value by itself.
  EXPECT_TRUE(parse_json_body(R"({"input_ids": [1, 2]})")["input_ids"].is_array());
  // 4 bytes an id against the memory budget, not 16: 5M ids in a 10 MB body parse under a 16 MiB +
  // 4 x body budget that the DOM (80 MB of values) outgrows.
  std::string big = "{\"input_ids\": [";
  for (int i = 0; i < 5000000; ++i) big += "1,";
  big += "1]}";
  EXPECT_EQ(expect_api_error([&] { parse_json_body(big); }).status(), 413);
  j = parse_json_body(big, lim);
  ASSERT_TRUE(is_packed_ids(j["input_ids"]));
  EXPECT_EQ(packed_ids(j["input_ids"]).size(), 5000001u);
}

// Every body parses to the same request (or the same error, word for word) with its ids packed as
// without: the routes' readers see a packed array where the DOM had an array of integers.
TEST(ParseJson, PackedIdsGiveTheSameRequestsAndErrorsAsTheDom) {
  const ParseContext ctx = stories_ctx();  // vocabulary 512, context 512
  EmbeddingConfig ecfg;
  struct Route {
    const char* field;
    std::function<bool(std::string_view)> ids;
    std::function<std::vector<std::vector<int32_t>>(const json&)> parse;
  };
  const std::vector<Route> routes = {
      {"input_ids", is_generate_id_field, [&](const json& b) { return parse_generate_request(b, ctx).prompts; }},
      {"prompt", is_completion_id_field, [&](const json& b) { return parse_completion_request(b, ctx).prompts; }},
      {"input", is_embeddings_id_field,
       [&](const json& b) { return parse_embeddings_request(b, ctx, ecfg, 8).inputs; }},
  };
  const std::vector<std::string> values = {
      "[1, 2, 3]", "[[1, 2], [3, 4]]", "[1, 2, [3]]", "[[1, 2], 3]", "[[1, 2], [3, 4.5]]", "[1, 2.5]", "[1, 1e2]",
      "[1, \"a\"]", "[1, 512]", "[1, -1]", "[1, 3000000000]", "[1, 18446744073709551615]", "[1, -2147483649]",
      "[1, null]", "[1, true]", "[1, {}]", "[]", "[[]]", "[[], [1]]", "[[1], []]", "[[1, [2]]]", "[\"a\", [1]]",
      "[[1], \"a\"]", "5", "\"Once\"", "[\"Once\", \"a\"]", "[-2147483648]", "[511, 0]"};
  int compared = 0;
  for (const Route& r : routes) {
    for (const std::string& v : values) {
      const std::string body = "{\"" + std::string(r.field) + "\": " + v + "}";
      JsonLimits packed;
      packed.id_field = r.ids;
      auto outcome = [&](const JsonLimits& lim) -> std::string {
        try {
          return fmt::format("{}", r.parse(parse_json_body(body, lim)));
        } catch (const ApiError& e) {
          return fmt::format("error {} {}", e.status(), e.body().dump());
        }
      };
      EXPECT_EQ(outcome(packed), outcome(JsonLimits{})) << body;
      ++compared;
    }
  }
  EXPECT_EQ(compared, int(routes.size() * values.size()));
}

// CPU time for 8x as many objects must grow about 8x (nlohmann's callback parser grew ~64x: it
// searched each array at every object's end). A ratio of CPU times, with a wide margin.
TEST(ParseJson, TimeIsLinearInArraysOfObjects) {
  auto body = [](int n) {
    std::string s = "{\"a\": [";
    for (int i = 0; i < n; ++i) s += "{\"k\":1},";
    return s + "{}]}";
  };
  JsonLimits roomy;
  roomy.memory_floor = size_t(1) << 30;
  auto cpu = [&](const std::string& b) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      const std::clock_t t0 = std::clock();
      json j = parse_json_body(b, roomy);
      EXPECT_TRUE(j["a"].is_array());
      best = std::min(best, double(std::clock() - t0) / CLOCKS_PER_SEC);
    }
    return best;
  };
  const std::string small = body(25000), large = body(200000);
  const double t_small = cpu(small), t_large = cpu(large);
  EXPECT_LT(t_large, 24 * std::max(t_small, 1e-4)) << t_small << " s vs " << t_large << " s";
}

// Each value is float32's shortest text that reads back to the same float32 bits (not the double it
// widens to, ~twice the text); non-finite values are null as JSON has no NaN.
TEST(EmbeddingValue, FloatsAreWrittenAsShortestFloat32) {
  EmbeddingConfig cfg;
  cfg.normalize = false;
  EXPECT_EQ(embedding_value({0.08294764161109924f, -1.0f, 1e-7f}, cfg, 0, false), "[0.08294764,-1,1e-07]");
  std::vector<float> v;
  uint32_t bits = 12345;
  for (int i = 0; i < 20000; ++i) {
    bits = bits * 1664525u + 1013904223u;  // every exponent and mantissa pattern, across the range
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isfinite(f)) v.push_back(f);
  }
  const json back = json::parse(embedding_value(v, cfg, 0, false));
  ASSERT_EQ(back.size(), v.size());
  const std::string text = embedding_value(v, cfg, 0, false);
  size_t start = 1;
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t end = text.find_first_of(",]", start);
    const std::string one = text.substr(start, end - start);
    start = end + 1;
    const float f = std::strtof(one.c_str(), nullptr);
    ASSERT_EQ(std::memcmp(&f, &v[i], 4), 0) << one << " does not read back as float32 " << v[i];
    // At most 9 significant digits (what float32 needs; a double's form has up to 17).
    std::string digits = one.substr(0, one.find('e'));
    std::erase_if(digits, [](char c) { return c == '-' || c == '.'; });
    digits.erase(0, digits.find_first_not_of('0'));
    digits.erase(digits.find_last_not_of('0') + 1);
    ASSERT_LE(digits.size(), 9u) << one;
  }
  EXPECT_EQ(embedding_value({std::nanf(""), 1.5f}, cfg, 0, false), "[null,1.5]");
  EXPECT_EQ(embedding_value({1.5f}, cfg, 0, true), "\"AADAPw==\"");
}

TEST(ErrorBody, HasOpenAiShape) {
  ApiError e(400, "'temperature' must be a number", "temperature", "", "invalid_value");
  json b = e.body();
  ASSERT_TRUE(b.contains("error"));
  EXPECT_EQ(b["error"]["message"], "'temperature' must be a number");
  EXPECT_EQ(b["error"]["type"], "invalid_request_error");
  EXPECT_EQ(b["error"]["param"], "temperature");
  EXPECT_EQ(b["error"]["code"], "invalid_value");
  json n = error_body(404, "no route");
  EXPECT_TRUE(n["error"]["param"].is_null());
  EXPECT_EQ(n["error"]["type"], "not_found_error");
}

TEST(ParseCompletion, ValidRequestBecomesTokensAndParams) {
  auto ctx = stories_ctx();
  json b = {{"model", "stories260K"}, {"prompt", "Once upon a time"}, {"temperature", 0}, {"top_k", 5},
            {"top_p", 0.9},           {"seed", 7},                     {"max_tokens", 20}, {"stop", "Lily"},
            {"logprobs", 2},          {"n", 3}};
  GenSpec s = parse_completion_request(b, ctx);
  ASSERT_EQ(s.prompts.size(), 1u);
  EXPECT_EQ(s.prompts[0], stories_tok().encode("Once upon a time", true));
  EXPECT_EQ(s.prompts[0][0], stories_tok().bos_id());
  EXPECT_EQ(s.base.params.temperature, 0.0f);
  EXPECT_EQ(s.base.params.top_k, 5);
  EXPECT_FLOAT_EQ(s.base.params.top_p, 0.9f);
  EXPECT_EQ(s.base.params.seed, 7u);
  EXPECT_EQ(s.base.params.max_new_tokens, 20);
  EXPECT_EQ(s.stop, std::vector<std::string>{"Lily"});
  EXPECT_TRUE(s.base.return_logprob);
  EXPECT_EQ(s.base.top_logprobs, 2);
  EXPECT_EQ(s.n, 3);
  EXPECT_FALSE(s.stream);
}

TEST(ParseCompletion, DefaultsAndPromptForms) {
  auto ctx = stories_ctx();
  GenSpec a = parse_completion_request({{"prompt", "hi"}}, ctx);
  EXPECT_EQ(a.base.params.max_new_tokens, 16);  // OpenAI's completions default
  EXPECT_EQ(a.model, "stories260K");
  GenSpec b = parse_completion_request({{"prompt", {1, 5, 9}}}, ctx);
  EXPECT_EQ(b.prompts[0], (std::vector<int32_t>{1, 5, 9}));
  GenSpec c = parse_completion_request({{"prompt", {{1, 2}, {3}}}}, ctx);
  EXPECT_EQ(c.prompts.size(), 2u);
  GenSpec d = parse_completion_request({{"prompt", {"a", "b"}}, {"stream", true},
                                        {"stream_options", {{"include_usage", true}}}}, ctx);
  EXPECT_EQ(d.prompts.size(), 2u);
  EXPECT_TRUE(d.include_usage);
  // JSON null means "default", as OpenAI clients send it.
  GenSpec e = parse_completion_request({{"prompt", "x"}, {"temperature", nullptr}, {"max_tokens", nullptr}}, ctx);
  EXPECT_EQ(e.base.params.temperature, 1.0f);
}

struct BadCase {
  json body;
  std::string param;
  int status = 400;
};

TEST(ParseCompletion, EveryBadInputNamesItsParameter) {
  auto ctx = stories_ctx();
  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += " the";
  std::vector<BadCase> cases = {
      {{{"max_tokens", 5}}, "prompt"},
      {{{"prompt", 5}}, "prompt"},
      {{{"prompt", json::array()}}, "prompt"},
      {{{"prompt", {1, "a"}}}, "prompt"},
      {{{"prompt", {1, 512}}}, "prompt"},
      {{{"prompt", {-1}}}, "prompt"},
      {{{"prompt", long_prompt}}, "prompt"},
      {{{"prompt", "hi"}, {"model", "gpt-4"}}, "model", 404},
      {{{"prompt", "hi"}, {"model", 3}}, "model"},
      {{{"prompt", "hi"}, {"temperature", "hot"}}, "temperature"},
      {{{"prompt", "hi"}, {"temperature", -0.5}}, "temperature"},
      {{{"prompt", "hi"}, {"temperature", 2.5}}, "temperature"},
      {{{"prompt", "hi"}, {"top_p", 0}}, "top_p"},
      {{{"prompt", "hi"}, {"top_p", 1.5}}, "top_p"},
      {{{"prompt", "hi"}, {"top_k", 0}}, "top_k"},
      {{{"prompt", "hi"}, {"top_k", 2.5}}, "top_k"},
      {{{"prompt", "hi"}, {"min_p", 2}}, "min_p"},
      {{{"prompt", "hi"}, {"frequency_penalty", 3}}, "frequency_penalty"},
      {{{"prompt", "hi"}, {"presence_penalty", -3}}, "presence_penalty"},
      {{{"prompt", "hi"}, {"repetition_penalty", 0}}, "repetition_penalty"},
      {{{"prompt", "hi"}, {"max_tokens", 0}}, "max_tokens"},
      {{{"prompt", "hi"}, {"max_tokens", -4}}, "max_tokens"},
      {{{"prompt", "hi"}, {"max_tokens", 100000}}, "max_tokens"},
      {{{"prompt", "hi"}, {"max_tokens", "10"}}, "max_tokens"},
      {{{"prompt", "hi"}, {"n", 0}}, "n"},
      {{{"prompt", "hi"}, {"n", 1000}}, "n"},
      {{{"prompt", "hi"}, {"logprobs", 21}}, "logprobs"},
      {{{"prompt", "hi"}, {"stop", {"a", "b", "c", "d", "e"}}}, "stop"},
      {{{"prompt", "hi"}, {"stop", 4}}, "stop"},
      {{{"prompt", "hi"}, {"stop", ""}}, "stop"},
      {{{"prompt", "hi"}, {"stream", "yes"}}, "stream"},
      {{{"prompt", "hi"}, {"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"prompt", "hi"}, {"seed", "x"}}, "seed"},
      {{{"prompt", "hi"}, {"echo", 1}}, "echo"},
      {{{"prompt", "hi"}, {"stop_token_ids", {9999}}}, "stop_token_ids"},
      {{{"prompt", "hi"}, {"allowed_token_ids", json::array()}}, "allowed_token_ids"},
      {{{"prompt", "hi"}, {"allowed_token_ids", {5, 512}}}, "allowed_token_ids"},
      {{{"prompt", "hi"}, {"allowed_token_ids", {-1}}}, "allowed_token_ids"},
      {{{"prompt", "hi"}, {"allowed_token_ids", {"5"}}}, "allowed_token_ids"},
      {{{"prompt", "hi"}, {"allowed_token_ids", 5}}, "allowed_token_ids"},
      {{{"prompt", "hi"}, {"bad_words", "Once"}}, "bad_words"},
      {{{"prompt", "hi"}, {"bad_words", {1}}}, "bad_words"},
      {{{"prompt", "hi"}, {"bad_words", {""}}}, "bad_words"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body.dump());
    ApiError e = expect_api_error([&] { parse_completion_request(c.body, ctx); });
    EXPECT_EQ(e.status(), c.status);
    EXPECT_EQ(e.param(), c.param);
    EXPECT_FALSE(std::string(e.what()).empty());
    EXPECT_EQ(e.body()["error"]["param"], c.param);
  }
}

// vLLM's allowed_token_ids and bad_words. bad_words' sequences follow vLLM's rule (v1
// SamplingParams.update_from_tokenizer), spelled here: each word left-stripped, encoded without
// special tokens, and " " + it kept when as long as that and starting with another id.
TEST(ParseCompletion, VllmAllowedTokenIdsAndBadWords) {
  auto ctx = stories_ctx();
  GenSpec a = parse_completion_request({{"prompt", "hi"}, {"allowed_token_ids", {5, 9, 5, 511}}}, ctx);
  EXPECT_EQ(a.base.allowed_token_ids, (std::vector<int32_t>{5, 9, 5, 511}));
  EXPECT_TRUE(a.base.bad_words.empty());
  const Tokenizer& tok = stories_tok();
  auto vllm_rule = [&](const std::vector<std::string>& words) {
    std::vector<std::vector<int32_t>> out;
    for (const auto& w : words) {
      const std::string s = w.substr(std::min(w.find_first_not_of(" \t\n"), w.size()));
      std::string with_space(1, ' ');
      with_space += s;
      const auto plain = tok.encode(s, false), spaced = tok.encode(with_space, false);
      out.push_back(plain);
      if (spaced.size() == plain.size() && spaced[0] != plain[0]) out.push_back(spaced);
    }
    return out;
  };
  const std::vector<std::string> words = {"Once", "  upon a time", "x", "\tcat"};
  GenSpec b = parse_completion_request({{"prompt", "hi"}, {"bad_words", words}}, ctx);
  EXPECT_EQ(b.base.bad_words, vllm_rule(words));
  EXPECT_GE(b.base.bad_words.size(), words.size());
  EXPECT_GT(b.base.bad_words[1].size(), 1u);  // "upon a time": several ids
  // Python's lstrip strips Unicode whitespace too (U+3000 ideographic space, U+00A0 no-break space):
  // the word is the same word.
  GenSpec u = parse_completion_request({{"prompt", "hi"}, {"bad_words", {"\u3000\u00a0Once"}}}, ctx);
  EXPECT_EQ(u.base.bad_words, vllm_rule({"Once"}));
  // No words: no rule.
  EXPECT_TRUE(parse_completion_request({{"prompt", "hi"}, {"bad_words", json::array()}}, ctx).base.bad_words.empty());
  // Bounds (vLLM's): 128 sequences, 1024 ids in all.
  std::vector<std::string> many;
  for (int i = 0; i < 129; ++i) {
    std::string w = "w";
    w += std::to_string(i);
    many.push_back(w);
  }
  ApiError e = expect_api_error([&] { parse_completion_request({{"prompt", "hi"}, {"bad_words", many}}, ctx); });
  EXPECT_EQ(e.param(), "bad_words");
  std::string longword;
  for (int i = 0; i < 600; ++i) longword += "a1";
  e = expect_api_error([&] { parse_completion_request({{"prompt", "hi"}, {"bad_words", {longword}}}, ctx); });
  EXPECT_EQ(e.param(), "bad_words");
  EXPECT_NE(std::string(e.what()).find("1024"), std::string::npos) << e.what();
  // /generate: SGLang has neither field.
  e = expect_api_error([&] {
    parse_generate_request({{"text", "a"}, {"sampling_params", {{"allowed_token_ids", {5}}}}}, ctx);
  });
  EXPECT_EQ(e.param(), "sampling_params.allowed_token_ids");
}

TEST(ParseChat, NoTemplateIsA400ThatSaysSo) {
  auto ctx = stories_ctx();
  json b = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  ApiError e = expect_api_error([&] { parse_chat_request(b, ctx); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "no_chat_template");
  EXPECT_NE(std::string(e.what()).find("chat template"), std::string::npos);
}

TEST(ParseChat, ChatMlTemplateRendersTheConversation) {
  auto ctx = stories_ctx();
  ctx.chat_template = std::make_shared<const ChatTemplate>(fixture("chatml.jinja"));
  json b = {{"messages",
             {{{"role", "system"}, {"content", "Be brief."}},
              {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Tell "}}, {{"type", "text"}, {"text", "a story"}}}}}}},
            {"max_completion_tokens", 7}};
  std::string text = render_chat_prompt(b, ctx);
  EXPECT_EQ(text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTell a story<|im_end|>\n"
            "<|im_start|>assistant\n");
  GenSpec s = parse_chat_request(b, ctx);
  EXPECT_EQ(s.prompts[0], stories_tok().encode(text, false));
  EXPECT_EQ(s.base.params.max_new_tokens, 7);
  // No max tokens: the rest of the context.
  GenSpec r = parse_chat_request({{"messages", b["messages"]}}, ctx);
  EXPECT_EQ(r.base.params.max_new_tokens, 512 - int64_t(r.prompts[0].size()));
}

// gpt-oss: the harmony reader finds messages by tags that are special tokens, so a chat under
// --reasoning-parser gpt-oss keeps special tokens in its text unless the request says otherwise (or
// turns the reader off with separate_reasoning false); other parsers keep the default.
TEST(ParseChat, GptOssKeepsSpecialTokensForTheHarmonyReader) {
  auto ctx = stories_ctx();
  ctx.chat_template = std::make_shared<const ChatTemplate>(fixture("chatml.jinja"));
  const json msgs = {{{"role", "user"}, {"content", "hi"}}};
  ctx.reasoning_parser = ReasoningParser::kGptOss;
  EXPECT_FALSE(parse_chat_request({{"messages", msgs}}, ctx).skip_special_tokens);
  EXPECT_TRUE(parse_chat_request({{"messages", msgs}, {"skip_special_tokens", true}}, ctx).skip_special_tokens);
  EXPECT_TRUE(parse_chat_request({{"messages", msgs}, {"separate_reasoning", false}}, ctx).skip_special_tokens);
  ctx.reasoning_parser = ReasoningParser::kQwen3;
  EXPECT_TRUE(parse_chat_request({{"messages", msgs}}, ctx).skip_special_tokens);
}

TEST(ParseChat, BadMessages) {
  auto ctx = stories_ctx();
  ctx.chat_template = std::make_shared<const ChatTemplate>(fixture("chatml.jinja"));
  std::vector<BadCase> cases = {
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", "hi"}}, "messages"},
      {json::object(), "messages"},
      {{{"messages", {{{"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}}}}}, "messages[0].content"},
      {{{"messages", {{{"role", "user"}, {"content", 5}}}}}, "messages[0].content"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}, "messages[0].content[0].image_url"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "audio"}}}}}}}}, "messages[0].content[0].type"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}, {"x", 1}}}}}}}},
       "messages[0].content[0].x"},
      // An image for a model without image tokens (stories260K): refused naming the part.
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", {{"url", "data:x"}}}}}}}}}},
       "messages[0].content[0].image_url.url"},
      {{{"messages",
         {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", {{"url", "data:x"}, {"detail", "low"}}}}}}}}}},
       "messages[0].content[0].image_url.detail"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 3}}, "top_logprobs"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_completion_tokens", 0}}, "max_completion_tokens"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body.dump());
    ApiError e = expect_api_error([&] { parse_chat_request(c.body, ctx); });
    EXPECT_EQ(e.status(), c.status);
    EXPECT_EQ(e.param(), c.param);
  }
}

TEST(ParseGenerate, SglangForms) {
  auto ctx = stories_ctx();
  GenSpec a = parse_generate_request({{"text", "Once"}, {"sampling_params", {{"temperature", 0}}}}, ctx);
  EXPECT_EQ(a.base.params.max_new_tokens, 128);
  EXPECT_EQ(a.prompts[0], stories_tok().encode("Once", true));
  EXPECT_FALSE(a.batched);
  GenSpec b = parse_generate_request({{"input_ids", {{1, 2}, {1, 3}}}, {"rid", {"x", "y"}}}, ctx);
  EXPECT_TRUE(b.batched);
  EXPECT_EQ(b.rids, (std::vector<std::string>{"x", "y"}));
  // SGLang's _normalize_rid: one string names a batch's requests <rid>_<i>.
  GenSpec named = parse_generate_request({{"text", {"a", "b"}}, {"rid", "one"}}, ctx);
  EXPECT_EQ(named.rids, (std::vector<std::string>{"one_0", "one_1"}));
  // max_new_tokens 0 is the prompt alone (the engine runs one step, whose token is dropped).
  GenSpec zero = parse_generate_request({{"text", "a"}, {"sampling_params", {{"max_new_tokens", 0}}}}, ctx);
  EXPECT_TRUE(zero.prompt_only);
  EXPECT_EQ(zero.base.params.max_new_tokens, 1);
  GenSpec c = parse_generate_request({{"input_embeds", {{0.5, 1.0}, {2.0, 3.0}, {1, 1}}}}, ctx);
  EXPECT_EQ(c.input_embeds_rows, 3);
  EXPECT_EQ(c.input_embeds.size(), 6u);
  std::vector<BadCase> cases = {
      {json::object(), "text"},
      {{{"text", "a"}, {"input_ids", {1}}}, "text"},
      {{{"input_ids", {{1}, 2}}}, "input_ids"},
      {{{"input_embeds", {{1.0, 2.0}, {1.0}}}}, "input_embeds"},
      {{{"text", "a"}, {"sampling_params", 3}}, "sampling_params"},
      {{{"text", "a"}, {"sampling_params", {{"max_new_tokens", -1}}}}, "max_new_tokens"},
      {{{"text", "a"}, {"sampling_params", {{"temperature", -1}}}}, "temperature"},
      {{{"text", {"a", "b"}}, {"rid", {"one"}}}, "rid"},  // a list names every prompt
      {{{"input_embeds", {{1.0, 2.0, 3.0}}}}, "input_embeds"},  // hidden size 2 below
  };
  ctx.limits.hidden = 2;
  for (const auto& cs : cases) {
    SCOPED_TRACE(cs.body.dump());
    ApiError e = expect_api_error([&] { parse_generate_request(cs.body, ctx); });
    EXPECT_EQ(e.status(), cs.status);
    EXPECT_EQ(e.param(), cs.param);
  }
}

// SGLang's data_parallel_rank, stop_regex and token_ids_logprob on /generate: what they become, and
// the 400 naming each for a value the server cannot honour.
TEST(ParseGenerate, SglangRoutingStopRegexAndTokenIdLogprobs) {
  auto ctx = stories_ctx();
  ctx.dp_size = 2;
  EXPECT_EQ(parse_generate_request({{"text", "a"}, {"data_parallel_rank", 1}}, ctx).base.dp_group, 1);
  EXPECT_EQ(parse_generate_request({{"text", "a"}, {"data_parallel_rank", 0}}, ctx).base.dp_group, 0);
  EXPECT_EQ(parse_generate_request({{"text", "a"}, {"data_parallel_rank", nullptr}}, ctx).base.dp_group, -1);
  EXPECT_EQ(parse_completion_request({{"prompt", "a"}, {"data_parallel_rank", 1}}, ctx).base.dp_group, 1);
  GenSpec rx = parse_generate_request({{"text", "a"}, {"sampling_params", {{"stop_regex", {"b+c", "d"}}}}}, ctx);
  ASSERT_NE(rx.stop_regex, nullptr);
  EXPECT_EQ(rx.stop_regex->patterns(), (std::vector<std::string>{"b+c", "d"}));
  GenSpec ids = parse_generate_request(
      {{"input_ids", {{1, 2}, {1, 3}}}, {"return_logprob", true}, {"token_ids_logprob", {{5, 4}, {511}}}}, ctx);
  EXPECT_EQ(ids.token_ids_logprob, (std::vector<std::vector<int32_t>>{{5, 4}, {511}}));
  GenSpec shared = parse_generate_request(
      {{"input_ids", {{1, 2}, {1, 3}}}, {"return_logprob", true}, {"token_ids_logprob", {7, 0}}}, ctx);
  EXPECT_EQ(shared.token_ids_logprob, (std::vector<std::vector<int32_t>>{{7, 0}, {7, 0}}));
  // Over the prompt's positions too: logprob_start_len turns prompt logprobs on, the ids go with them.
  const GenSpec over_prompt = parse_generate_request(
      {{"input_ids", {1, 2, 3}}, {"return_logprob", true}, {"logprob_start_len", 0}, {"token_ids_logprob", {3}}}, ctx);
  EXPECT_TRUE(over_prompt.base.prompt_logprobs);
  EXPECT_EQ(over_prompt.token_ids_logprob, (std::vector<std::vector<int32_t>>{{3}}));
  std::vector<BadCase> cases = {
      {{{"text", "a"}, {"data_parallel_rank", 2}}, "data_parallel_rank"},
      {{{"text", "a"}, {"data_parallel_rank", -1}}, "data_parallel_rank"},
      {{{"text", "a"}, {"data_parallel_rank", 1.5}}, "data_parallel_rank"},
      {{{"text", "a"}, {"data_parallel_rank", "1"}}, "data_parallel_rank"},
      {{{"text", "a"}, {"sampling_params", {{"stop_regex", "a(b"}}}}, "stop_regex"},
      {{{"text", "a"}, {"sampling_params", {{"stop_regex", {"ok", 3}}}}}, "stop_regex"},
      {{{"text", "a"}, {"sampling_params", {{"stop_regex", ""}}}}, "stop_regex"},
      {{{"text", "a"}, {"return_logprob", true}, {"token_ids_logprob", {512}}}, "token_ids_logprob"},
      {{{"text", "a"}, {"return_logprob", true}, {"token_ids_logprob", {-1}}}, "token_ids_logprob"},
      {{{"text", "a"}, {"return_logprob", true}, {"token_ids_logprob", {1.5}}}, "token_ids_logprob"},
      {{{"text", "a"}, {"token_ids_logprob", {3}}}, "token_ids_logprob"},  // needs return_logprob
      {{{"text", {"a", "b"}}, {"return_logprob", true}, {"token_ids_logprob", {{3}}}}, "token_ids_logprob"},
      {{{"text", {"a", "b"}}, {"return_logprob", true}, {"token_ids_logprob", {{3}, {600}}}}, "token_ids_logprob[1]"},
  };
  for (const auto& cs : cases) {
    SCOPED_TRACE(cs.body.dump());
    ApiError e = expect_api_error([&] { parse_generate_request(cs.body, ctx); });
    EXPECT_EQ(e.status(), cs.status);
    EXPECT_EQ(e.param(), cs.param);
  }
  // The PCRE2 error is in the message; one DP group allows only rank 0 (on the OpenAI routes too).
  ApiError bad_rx = expect_api_error(
      [&] { parse_generate_request({{"text", "a"}, {"sampling_params", {{"stop_regex", {"x", "a(b"}}}}}, ctx); });
  EXPECT_NE(std::string(bad_rx.what()).find("missing closing parenthesis"), std::string::npos) << bad_rx.what();
  ctx.dp_size = 1;
  EXPECT_EQ(parse_generate_request({{"text", "a"}, {"data_parallel_rank", 0}}, ctx).base.dp_group, 0);
  ApiError one = expect_api_error([&] { parse_chat_request({{"messages", json::array()}, {"data_parallel_rank", 1}}, ctx); });
  EXPECT_EQ(one.param(), "data_parallel_rank");
}

TEST(StopRegex, FirstMatchingPatternInRequestOrder) {
  StopRegex rx({"named \\w+\\.", "Lily", "\\d{3}"});
  EXPECT_FALSE(rx.search("Once upon a time"));
  EXPECT_EQ(rx.search("a girl named Li").value_or(""), "");
  EXPECT_EQ(rx.search("a girl named Lily").value_or(""), "Lily");  // the first pattern needs the dot
  EXPECT_EQ(rx.search("a girl named Lily.").value_or(""), "named \\w+\\.");
  EXPECT_EQ(rx.search("year 2024").value_or(""), "\\d{3}");
  // Unicode classes, and a character still split across tokens (invalid UTF-8) neither matches nor fails.
  StopRegex uni({"\\p{Lu}\\p{Ll}+é"});
  EXPECT_TRUE(uni.search("ok Café"));
  EXPECT_FALSE(uni.search(std::string("ok Caf\xC3", 7)));
  try {
    StopRegex bad({"fine", "(unclosed"});
    ADD_FAILURE() << "an invalid pattern compiled";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("pattern 1"), std::string::npos) << e.what();
  }
}

// LoRA adapters (--lora-paths): /generate's lora_path (SGLang), the OpenAI routes' model (vLLM: the
// adapter's name; SGLang: "<served>:<adapter>") and their lora_path, unknown names.
TEST(ParseLora, SelectorsBecomeSlots) {
  auto ctx = stories_ctx();
  ctx.limits.lora = std::make_shared<LoraRegistry>(std::vector<std::pair<std::string, std::string>>{{"a", "/a"}, {"b", "/b"}});
  EXPECT_TRUE(parse_generate_request({{"text", "Once"}}, ctx).loras.empty());
  EXPECT_EQ(parse_generate_request({{"text", "Once"}, {"lora_path", "b"}}, ctx).loras, (std::vector<int32_t>{1}));
  EXPECT_EQ(parse_generate_request({{"text", {"x", "y", "z"}}, {"lora_path", {"b", nullptr, "a"}}}, ctx).loras,
            (std::vector<int32_t>{1, -1, 0}));
  EXPECT_TRUE(parse_generate_request({{"text", {"x", "y"}}, {"lora_path", {nullptr, nullptr}}}, ctx).loras.empty());
  const json msgs = {{{"role", "user"}, {"content", "hi"}}};
  GenSpec c = parse_completion_request({{"model", "a"}, {"prompt", "Once"}}, ctx);
  EXPECT_EQ(c.loras, (std::vector<int32_t>{0}));
  EXPECT_EQ(c.model, "a");  // the reply echoes what the request named
  c = parse_completion_request({{"model", "stories260K:b"}, {"prompt", "Once"}}, ctx);
  EXPECT_EQ(c.loras, (std::vector<int32_t>{1}));
  EXPECT_EQ(c.model, "stories260K:b");
  c = parse_completion_request({{"model", "stories260K"}, {"prompt", {"x", "y"}}, {"lora_path", "b"}}, ctx);
  EXPECT_EQ(c.loras, (std::vector<int32_t>{1}));
  EXPECT_EQ(c.model, "stories260K");
  c = parse_completion_request({{"model", "a"}, {"prompt", "x"}, {"lora_path", "a"}}, ctx);
  EXPECT_EQ(c.loras, (std::vector<int32_t>{0}));
  EXPECT_TRUE(parse_completion_request({{"model", "stories260K"}, {"prompt", "Once"}}, ctx).loras.empty());

  std::vector<BadCase> cases = {
      {{{"text", "a"}, {"lora_path", "c"}}, "lora_path"},
      {{{"text", "a"}, {"lora_path", 3}}, "lora_path"},
      {{{"text", {"a", "b"}}, {"lora_path", {"a"}}}, "lora_path"},  // one per prompt
      {{{"text", {"a", "b"}}, {"lora_path", {"a", "c"}}}, "lora_path[1]"},
      {{{"text", "a"}, {"lora_id", "x"}}, "lora_id"},  // SGLang's internal ids: refused
  };
  for (const auto& cs : cases) {
    SCOPED_TRACE(cs.body.dump());
    ApiError e = expect_api_error([&] { parse_generate_request(cs.body, ctx); });
    EXPECT_EQ(e.status(), cs.status);
    EXPECT_EQ(e.param(), cs.param);
  }
  ApiError e = expect_api_error([&] { parse_completion_request({{"model", "c"}, {"prompt", "x"}}, ctx); });
  EXPECT_EQ(e.status(), 404);
  EXPECT_EQ(e.param(), "model");
  e = expect_api_error([&] { parse_completion_request({{"model", "stories260K:c"}, {"prompt", "x"}}, ctx); });
  EXPECT_EQ(e.status(), 404);
  e = expect_api_error([&] { parse_completion_request({{"model", "a"}, {"prompt", "x"}, {"lora_path", "b"}}, ctx); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "lora_path");
  e = expect_api_error([&] { parse_chat_request({{"model", "x:a"}, {"messages", msgs}}, ctx); });
  EXPECT_EQ(e.status(), 404);
  // Without --lora-paths every name is unknown.
  ctx.limits.lora = std::make_shared<LoraRegistry>();
  e = expect_api_error([&] { parse_generate_request({{"text", "a"}, {"lora_path", "a"}}, ctx); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "lora_path");
}

TEST(LoraPaths, SglangFormsAndStartUpErrors) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("lora_paths_test.{}", getpid());
  std::filesystem::create_directories(dir / "ad1");
  std::filesystem::create_directories(dir / "ad2");
  const std::string d1 = (dir / "ad1").string(), d2 = (dir / "ad2").string();
  auto ok = parse_lora_paths({"x=" + d1, d2 + "/", R"({"lora_name": "j", "lora_path": ")" + d1 + R"("})"}, "m");
  ASSERT_EQ(ok.size(), 3u);  // a bare path (trailing slash or not) is named after its folder
  EXPECT_EQ(ok[0].name, "x");
  EXPECT_EQ(ok[0].path, d1);
  EXPECT_EQ(ok[1].name, "ad2");
  EXPECT_EQ(ok[2].name, "j");
  auto error = [&](std::vector<std::string> v) {
    try {
      parse_lora_paths(v, "m");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (const auto& [values, needle] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"x=" + (dir / "none").string()}, "does not exist"},
           {{"x=" + d1, "x=" + d2}, "given twice"},
           {{"m=" + d1}, "served model"},
           {{"x="}, "no adapter folder"},
           {{"=" + d1}, "no name"},
           {{R"({"lora_name": "j"})"}, "'lora_path' is required"},
           {{R"({"lora_path": 3})"}, "must be a string"},
           {{R"({"lora_name": "j", "lora_path": ")" + d1 + R"(", "rank": 8})"}, "unknown key"},
           {{"{not json"}, "not valid JSON"},
           {{R"({"lora_path": ")" + d1 + R"("})", "ad1=" + d2}, "given twice"}}) {  // JSON without a name: the folder's
    const std::string e = error(values);
    EXPECT_NE(e.find("--lora-paths"), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << e;
  }
  std::filesystem::remove_all(dir);
}

TEST(Sse, OneDataLinePerEventAndDone) {
  std::string ev = sse_event({{"text", "two\nlines"}});
  EXPECT_EQ(ev.rfind("data: ", 0), 0u);
  EXPECT_EQ(ev.substr(ev.size() - 2), "\n\n");
  EXPECT_EQ(ev.find('\n'), ev.size() - 2);
  EXPECT_EQ(json::parse(ev.substr(6))["text"], "two\nlines");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

// SGLang's num_used_tokens is total - (available + evictable): pages the prefix cache alone holds
// are free to it, so an idle server with a full cache reads 0 (its dashboards and autoscalers
// watch token_usage).
TEST(Metrics, SglangTokenUsageCountsThePrefixCacheAsFree) {
  Metrics m;
  EngineStats es;
  es.groups.push_back({.dp_rank = 0, .running = 0, .waiting = 0, .kv_pages_used = 63, .kv_pages_total = 64,
                       .kv_pages_cached = 63});
  es.groups.push_back({.dp_rank = 1, .running = 1, .waiting = 0, .kv_pages_used = 40, .kv_pages_total = 64,
                       .kv_pages_cached = 24});
  const std::string text = m.render_sglang(es, "m", 16);
  EXPECT_NE(text.find("sglang:num_used_tokens{model_name=\"m\",dp_rank=\"0\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sglang:token_usage{model_name=\"m\",dp_rank=\"0\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sglang:num_used_tokens{model_name=\"m\",dp_rank=\"1\"} 256\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sglang:token_usage{model_name=\"m\",dp_rank=\"1\"} 0.25\n"), std::string::npos) << text;
}

TEST(Metrics, PrometheusTextWithCumulativeBucketsAndGroupLabels) {
  Metrics m;
  m.time_to_first_token.observe(0.003);
  m.time_to_first_token.observe(0.004);
  m.time_to_first_token.observe(7.0);
  m.count_request("/v1/completions", 200);
  EngineStats es;
  es.groups.push_back({.dp_rank = 0, .running = 2, .waiting = 1, .kv_pages_used = 5, .kv_pages_total = 20,
                       .prefix_hit_tokens = 3, .prefix_query_tokens = 12, .kv_bytes_per_page = 1000});
  es.groups.push_back({.dp_rank = 1, .running = 0, .waiting = 0, .kv_pages_used = 0, .kv_pages_total = 20});
  std::string text = m.render(es, true, false);
  // Every sample line is `name{labels} value`; every name has a TYPE line.
  std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [-+0-9.eE]+(Inf)?$)");
  std::istringstream in(text);
  int samples = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    ++samples;
  }
  EXPECT_GT(samples, 20);
  EXPECT_NE(text.find("dpserve_time_to_first_token_seconds_bucket{le=\"0.005\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_time_to_first_token_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_num_running_reqs{dp_rank=\"0\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_num_queue_reqs{dp_rank=\"0\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_num_running_reqs{dp_rank=\"1\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_kv_usage{dp_rank=\"0\"} 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_kv_bytes_used{dp_rank=\"0\"} 5000\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_kv_bytes_total{dp_rank=\"0\"} 20000\n"), std::string::npos);
  EXPECT_NE(text.find("dpserve_prefix_cache_hit_rate{dp_rank=\"0\"} 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE dpserve_time_to_first_token_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("dpserve_http_requests_total{route=\"/v1/completions\",status=\"200\"} 1\n"),
            std::string::npos);
}

// Fill-in-the-middle formats: found by the vocabulary's own tokens (Qwen3's tokenizer has
// <|fim_prefix|>; Llama-3's and llama2.c's none), and each written as its model card shows.
TEST(FimPrompt, FoundByTheVocabularyAndWrittenAsTheCardsShow) {
  const auto qwen = Tokenizer::load(shared_dir() + "/tokenizers/qwen3");
  const auto llama3 = Tokenizer::load(shared_dir() + "/tokenizers/llama3");
  const FimFormat q = find_fim_format(*qwen);
  EXPECT_EQ(q.name, "qwen-codegemma");
  EXPECT_FALSE(find_fim_format(*llama3).found());
  EXPECT_FALSE(find_fim_format(stories_tok()).found());
  // Qwen2.5-Coder's card: '<|fim_prefix|>' + prefix + '<|fim_suffix|>' + suffix + '<|fim_middle|>'.
  EXPECT_EQ(fim_prompt(q, "def f():", "\nf()"), "<|fim_prefix|>def f():<|fim_suffix|>\nf()<|fim_middle|>");
  // DeepSeek-Coder's: <｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>.
  const FimFormat ds{"deepseek", "deepseek_coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", false};
  EXPECT_EQ(fim_prompt(ds, "a", "b"), "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>");
  // Codestral's (mistral-common's encode_fim): [SUFFIX]suffix[PREFIX]prefix, the middle follows.
  const FimFormat cs{"codestral", "codestral", "[PREFIX]", "[SUFFIX]", "", true};
  EXPECT_EQ(fim_prompt(cs, "a", "b"), "[SUFFIX]b[PREFIX]a");
  // The markers are read back as single tokens.
  const std::vector<int32_t> ids = qwen->encode(fim_prompt(q, "x", "y"), false);
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[0], 151659);
  EXPECT_EQ(ids[2], 151661);
  EXPECT_EQ(ids[4], 151660);
}

// --completion-template takes SGLang's names; a format the vocabulary cannot spell stops the server.
TEST(FimPrompt, NamedByCompletionTemplate) {
  const auto qwen = Tokenizer::load(shared_dir() + "/tokenizers/qwen3");
  const FimFormat q = fim_format_named(*qwen, "qwen_coder");
  EXPECT_EQ(fim_prompt(q, "a", "b"), "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>");
  auto message = [&](std::string_view name) {
    try {
      fim_format_named(*qwen, name);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // Qwen3's vocabulary has none of StarCoder's or DeepSeek-Coder's markers.
  auto has = [](const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; };
  EXPECT_PRED2(has, message("star_coder"), "--completion-template star_coder: this tokenizer has no single token for "
                                           "<fim_prefix>");
  EXPECT_PRED2(has, message("deepseek_coder"), "<｜fim▁begin｜>");
  EXPECT_PRED2(has, message("codestral"), "[PREFIX]");
  EXPECT_PRED2(has, message("chatml"), "the names are qwen_coder, star_coder, deepseek_coder, codestral");
}

}  // namespace
}  // namespace dpserve
