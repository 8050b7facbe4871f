// RequestLimits: the one set of bounds every entry point checks. The expected ranges are OpenAI's
// documented ones (temperature [0, 2], penalties [-2, 2], top_logprobs [0, 20]) and SGLang's for its
// extensions, as docs/api.md lists them; each is probed just inside and just outside.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/request_limits.h"

namespace dpserve {
namespace {

using P = RequestParam;

RequestLimits small() { return RequestLimits{.vocab = 512, .context_length = 64, .hidden = 4}; }

Request prompt_request(std::vector<int32_t> ids, int64_t max_new = 8) {
  Request r;
  r.input_ids = std::move(ids);
  r.params.max_new_tokens = max_new;
  return r;
}

TEST(RequestLimits, FloatBoundsInsideAndOutside) {
  struct Case {
    P p;
    double ok_lo, ok_hi, bad_lo, bad_hi;
  };
  const Case cases[] = {
      {P::kTemperature, 0, 2, -1e-6, 2.001},       {P::kTopP, 1e-6, 1, 0, 1.001},
      {P::kMinP, 0, 1, -0.01, 1.01},               {P::kFrequencyPenalty, -2, 2, -2.01, 2.01},
      {P::kPresencePenalty, -2, 2, -2.01, 2.01},   {P::kRepetitionPenalty, 1e-6, 2, 0, 2.01},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(field_name(c.p));
    EXPECT_FALSE(RequestLimits::value_rule(c.p, c.ok_lo));
    EXPECT_FALSE(RequestLimits::value_rule(c.p, c.ok_hi));
    EXPECT_TRUE(RequestLimits::value_rule(c.p, c.bad_lo));
    EXPECT_TRUE(RequestLimits::value_rule(c.p, c.bad_hi));
    EXPECT_TRUE(RequestLimits::value_rule(c.p, std::nan("")));
    EXPECT_TRUE(RequestLimits::value_rule(c.p, std::numeric_limits<double>::infinity()));
  }
  EXPECT_EQ(*RequestLimits::value_rule(P::kTemperature, 5), "must be in [0, 2]");
  EXPECT_EQ(*RequestLimits::value_rule(P::kTopP, 0), "must be in (0, 1]");
}

// A value the engine would see as 0 (float underflow) is judged as 0, not as the double sent.
TEST(RequestLimits, ValuesAreJudgedAsTheFloatTheEngineUses) {
  EXPECT_TRUE(RequestLimits::value_rule(P::kTopP, 1e-300));
  EXPECT_TRUE(RequestLimits::value_rule(P::kRepetitionPenalty, 1e-300));
  EXPECT_TRUE(RequestLimits::value_rule(P::kTemperature, 1e300));  // inf as a float
  EXPECT_FALSE(RequestLimits::value_rule(P::kTopP, 1e-30));         // a normal float
}

TEST(RequestLimits, IntegerBounds) {
  EXPECT_FALSE(RequestLimits::int_rule(P::kTopK, -1));
  EXPECT_FALSE(RequestLimits::int_rule(P::kTopK, 1));
  EXPECT_FALSE(RequestLimits::int_rule(P::kTopK, std::numeric_limits<int32_t>::max()));
  EXPECT_TRUE(RequestLimits::int_rule(P::kTopK, 0));
  EXPECT_TRUE(RequestLimits::int_rule(P::kTopK, -2));
  EXPECT_TRUE(RequestLimits::int_rule(P::kTopK, int64_t(std::numeric_limits<int32_t>::max()) + 1));
  EXPECT_FALSE(RequestLimits::int_rule(P::kTopLogprobs, 20));
  EXPECT_TRUE(RequestLimits::int_rule(P::kTopLogprobs, 21));
  EXPECT_TRUE(RequestLimits::int_rule(P::kTopLogprobs, -1));
  EXPECT_FALSE(RequestLimits::int_rule(P::kN, 64));
  EXPECT_TRUE(RequestLimits::int_rule(P::kN, 65));
  EXPECT_TRUE(RequestLimits::int_rule(P::kN, 0));
  EXPECT_TRUE(RequestLimits::int_rule(P::kMaxNewTokens, 0));
  EXPECT_FALSE(RequestLimits::int_rule(P::kSeed, std::numeric_limits<int64_t>::min()));
}

TEST(RequestLimits, PromptAndContext) {
  const RequestLimits lim = small();
  EXPECT_FALSE(lim.check(prompt_request({1, 2, 3}, 61)));  // 3 + 61 = 64 fits
  auto over = lim.check(prompt_request({1, 2, 3}, 62));
  ASSERT_TRUE(over);
  EXPECT_EQ(over->param, P::kMaxNewTokens);
  auto zero = lim.check(prompt_request({1}, 0));
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->param, P::kMaxNewTokens);
  EXPECT_NE(zero->message.find("'max_new_tokens' must be at least 1, got 0"), std::string::npos) << zero->message;
  auto huge = lim.check(prompt_request({1}, std::numeric_limits<int64_t>::max()));
  ASSERT_TRUE(huge);
  EXPECT_NE(huge->message.find("9223372036854775808 tokens"), std::string::npos) << huge->message;
  EXPECT_EQ(lim.check(prompt_request({}))->param, P::kPrompt);
  EXPECT_EQ(lim.check(prompt_request({1, 512}))->param, P::kPrompt);
  EXPECT_EQ(lim.check(prompt_request({-1}))->param, P::kPrompt);
  EXPECT_EQ(lim.check(prompt_request(std::vector<int32_t>(64, 1), 1))->param, P::kPrompt);
}

// A KV pool of 20 positions under a context of 64: a sequence writes prompt + max_new - 1 positions
// (its last token is never fed back, Scheduler::add), so 3 + 18 fits and 3 + 19 does not.
TEST(RequestLimits, KvPoolSmallerThanTheContext) {
  RequestLimits lim = small();
  EXPECT_EQ(lim.room_after(3), 61);  // no pool bound: the context's rest
  lim.kv_positions = 20;
  EXPECT_EQ(lim.room_after(3), 18);
  EXPECT_FALSE(lim.check(prompt_request({1, 2, 3}, 18)));
  auto over = lim.check(prompt_request({1, 2, 3}, 19));
  ASSERT_TRUE(over);
  EXPECT_EQ(over->param, P::kMaxNewTokens);
  EXPECT_NE(over->message.find("KV cache holds 20 positions"), std::string::npos) << over->message;
  EXPECT_FALSE(lim.check(prompt_request(std::vector<int32_t>(20, 1), 1)));
  EXPECT_EQ(lim.check(prompt_request(std::vector<int32_t>(21, 1), 1))->param, P::kPrompt);
  EXPECT_TRUE(lim.check(prompt_request({1}, std::numeric_limits<int64_t>::max())));
}

// min_new_tokens within [0, max_new_tokens] (the frontend names its own field; this guards the ranks).
TEST(RequestLimits, MinNewTokensWithinTheMaximum) {
  const RequestLimits lim = small();
  Request r = prompt_request({1, 2, 3}, 8);
  r.params.min_new_tokens = 8;
  EXPECT_FALSE(lim.check(r));
  r.params.min_new_tokens = 9;
  auto over = lim.check(r);
  ASSERT_TRUE(over);
  EXPECT_NE(over->message.find("min_new_tokens 9 must be in [0, 'max_new_tokens' 8]"), std::string::npos)
      << over->message;
  r.params.min_new_tokens = -1;
  EXPECT_TRUE(lim.check(r));
}

TEST(RequestLimits, SamplingStopIdsAndLogprobs) {
  const RequestLimits lim = small();
  Request r = prompt_request({1, 2});
  r.params.stop_token_ids = {5, 600};
  EXPECT_EQ(lim.check(r)->param, P::kStopTokenIds);
  r = prompt_request({1, 2});
  r.top_logprobs = 21;
  EXPECT_EQ(lim.check(r)->param, P::kTopLogprobs);
  r = prompt_request({1, 2});
  r.params.min_p = std::nanf("");
  EXPECT_EQ(lim.check(r)->param, P::kMinP);
  r = prompt_request({1, 2});
  r.params.top_k = 0;
  EXPECT_EQ(lim.check(r)->param, P::kTopK);
}

TEST(RequestLimits, InputEmbeds) {
  const RequestLimits lim = small();
  Request r;
  r.params.max_new_tokens = 4;
  r.input_embeds = std::vector<float>(8, 0.5f);
  r.input_embeds_rows = 2;
  EXPECT_FALSE(lim.check(r));
  r.input_embeds_rows = 3;  // 8 values are not 3 rows of 4
  EXPECT_EQ(lim.check(r)->param, P::kInputEmbeds);
  r.input_embeds_rows = 2;
  r.input_embeds[3] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(lim.check(r)->param, P::kInputEmbeds);
  r.input_embeds[3] = 0;
  r.input_ids = {1};
  EXPECT_EQ(lim.check(r)->param, P::kInputEmbeds);
}

// Each caller names parameters its own way.
// LoRA: the engine refuses a slot the ranks did not load (their control-message decoding would fail).
TEST(RequestLimits, LoraSlotMustBeLoaded) {
  RequestLimits l = small();
  Request r = prompt_request({1, 2});
  EXPECT_FALSE(l.check(r));  // -1: the base model
  r.lora = 0;
  ASSERT_TRUE(l.check(r));   // no adapters loaded
  EXPECT_NE(l.check(r)->message.find("LoRA adapter slot 0"), std::string::npos);
  auto reg = std::make_shared<LoraRegistry>(std::vector<std::pair<std::string, std::string>>{{"a", "/a"}, {"b", "/b"}});
  l.lora = reg;
  EXPECT_FALSE(l.check(r));
  r.lora = 1;
  EXPECT_FALSE(l.check(r));
  r.lora = 2;
  EXPECT_TRUE(l.check(r));
  r.lora = -2;
  EXPECT_TRUE(l.check(r));
  // Run-time unload: the slot stops being usable at once; a later load reusing it has a new
  // generation, which a request resolved before the unload does not carry.
  r.lora = 0;
  r.lora_generation = reg->find("a")->generation;
  EXPECT_FALSE(l.check(r));
  ASSERT_EQ(reg->begin_unload("a"), std::optional<int32_t>(0));
  EXPECT_TRUE(l.check(r));
  reg->end_unload(0);
  int32_t slot = -1;
  EXPECT_EQ(reg->begin_load("c", "/c", slot), "");
  EXPECT_EQ(slot, 0);  // the freed slot is reused
  EXPECT_TRUE(l.check(r));  // loading: not usable yet
  reg->end_load(0, true);
  EXPECT_TRUE(l.check(r));  // usable, but not the adapter the request named
  r.lora_generation = reg->find("c")->generation;
  EXPECT_FALSE(l.check(r));
}

TEST(LoraRegistry, NamesSlotsAndFailedLoads) {
  LoraRegistry reg(std::vector<std::pair<std::string, std::string>>{{"a", "/a"}});
  int32_t slot = -1;
  EXPECT_NE(reg.begin_load("a", "/other", slot).find("already loaded"), std::string::npos);
  EXPECT_EQ(reg.begin_load("b", "/b", slot), "");
  EXPECT_EQ(slot, 1);
  EXPECT_FALSE(reg.find("b"));  // not findable while loading
  EXPECT_NE(reg.begin_load("b", "/b", slot).find("being loaded"), std::string::npos);
  reg.end_load(1, false);  // failed: the slot is free again, the name too
  EXPECT_FALSE(reg.find("b"));
  EXPECT_FALSE(reg.usable(1));
  EXPECT_EQ(reg.begin_load("b", "/b2", slot), "");
  EXPECT_EQ(slot, 1);
  reg.end_load(1, true);
  ASSERT_TRUE(reg.find("b"));
  EXPECT_EQ(reg.find("b")->path, "/b2");
  ASSERT_EQ(reg.list().size(), 2u);
  EXPECT_EQ(reg.list()[1].name, "b");
  EXPECT_FALSE(reg.begin_unload("zz"));
  EXPECT_EQ(reg.begin_unload("a"), std::optional<int32_t>(0));
  EXPECT_FALSE(reg.find("a"));
  EXPECT_NE(reg.begin_load("a", "/a", slot).find("being unloaded"), std::string::npos);
  reg.end_unload(0);
  EXPECT_EQ(reg.list().size(), 1u);
}

TEST(RequestLimits, MessagesUseTheCallersNames) {
  Request r = prompt_request({1});
  r.params.temperature = 5;
  auto v = small().check(r, [](P p) { return p == P::kTemperature ? std::string("--temperature") : field_name(p); });
  ASSERT_TRUE(v);
  EXPECT_EQ(v->message, "--temperature must be in [0, 2], got 5");
}

}  // namespace
}  // namespace dpserve
