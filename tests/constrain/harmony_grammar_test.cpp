// gpt-oss's harmony format under a constraint (tool_choice required / named, strict tools, a
// response_format after the analysis; GBNF naming its special tokens): the outputs of OpenAI's harmony guide and of gpt-oss's chat
// template, tokenized as the model writes them (tags as their special tokens), run through the real
// VocabIndex and Matcher. Tags spelled by text tokens, special tokens inside JSON, other tools and
// arguments outside the schema are refused.
#include <gtest/gtest.h>

#include "constrain/automaton.h"
#include "constrain/constraint.h"
#include "constrain/gbnf_compiler.h"
#include "constrain/matcher.h"
#include "constrain/special_token.h"
#include "constrain/token_mask_cache.h"
#include "constrain/tool_call_grammar.h"
#include "constrain/vocab_index.h"
#include "core/check.h"
#include "harmony_tokenizer.h"

namespace dpserve::constrain {
namespace {

using test::harmony_tokenizer;

constexpr int64_t kLogits = 151936;  // the tiny Qwen3 model's rows, past the added tags

const char* kWeather = R"({"type": "object", "properties": {"location": {"type": "string"},
  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"], "additionalProperties": false})";

std::shared_ptr<const VocabIndex> vocab() {
  static auto v = VocabIndex::from_tokenizer(harmony_tokenizer(), kLogits);
  return v;
}

int32_t id_of(std::string_view tag) {
  const int32_t id = harmony_tokenizer().piece_to_id(tag);
  EXPECT_GE(id, 0) << tag;
  return id;
}

// `text` as the model writes it: each <|tag|> its special token, the rest as the tokenizer encodes it.
std::vector<int32_t> harmony_tokens(std::string_view text) {
  std::vector<int32_t> out;
  while (!text.empty()) {
    const size_t open = text.find("<|");
    const size_t close = open == std::string_view::npos ? open : text.find("|>", open);
    const size_t cut = close == std::string_view::npos ? text.size() : open;
    if (cut > 0) {
      const auto ids = harmony_tokenizer().encode(text.substr(0, cut), false);
      out.insert(out.end(), ids.begin(), ids.end());
    }
    if (cut == text.size()) break;
    out.push_back(id_of(text.substr(open, close + 2 - open)));
    text.remove_prefix(close + 2);
  }
  return out;
}

std::shared_ptr<const Automaton> tools(bool text, std::optional<std::string> only = std::nullopt) {
  ToolCallSpec s;
  s.format = ToolCallFormat::kHarmony;
  s.tools = {{"get_weather", nlohmann::ordered_json::parse(kWeather)},
             {"get_time", nlohmann::ordered_json::parse(R"({"type": "object", "properties": {}})")}};
  s.only = std::move(only);
  s.text = text;
  return compile_constraint({ConstraintKind::kToolCalls, s.to_text()});
}

// How far `ids` get: the number accepted (all of them: ids.size()), and whether EOS may follow.
struct Progress {
  size_t accepted = 0;
  bool can_end = false;
};
Progress run(const std::shared_ptr<const Automaton>& a, const std::vector<int32_t>& ids) {
  Matcher m(std::make_shared<TokenMaskCache>(a, vocab()));
  Progress r;
  for (int32_t id : ids) {
    if (!m.accept(id)) return r;
    ++r.accepted;
  }
  r.can_end = m.can_end();
  return r;
}

bool whole(const std::shared_ptr<const Automaton>& a, std::string_view text) {
  const auto ids = harmony_tokens(text);
  const Progress r = run(a, ids);
  return r.accepted == ids.size() && r.can_end;
}

// The guide's function call, after its analysis message (the prompt ended in "<|start|>assistant").
const char* kGuideCall =
    "<|channel|>analysis<|message|>Need to use function get_weather.<|end|><|start|>assistant"
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"San Francisco\"}";

TEST(HarmonyVocab, SpecialTokensAreSpelledAndEosStaysOut) {
  const VocabIndex& v = *vocab();
  const int32_t channel = id_of("<|channel|>");
  EXPECT_TRUE(v.is_text(channel));
  EXPECT_EQ(v.bytes(channel), special_token_spelling("<|channel|>"));
  const int32_t eos = harmony_tokenizer().eos_ids().at(0);  // <|im_end|>
  EXPECT_FALSE(v.is_text(eos));
  EXPECT_TRUE(v.is_eos(eos));
  // Qwen3's byte-level token for the byte 0xFF ("ÿ" in its vocabulary) can be in no UTF-8 text.
  const int32_t ff = harmony_tokenizer().piece_to_id("\xC3\xBF");
  ASSERT_GE(ff, 0);
  EXPECT_EQ(harmony_tokenizer().token_bytes(ff), "\xFF");
  EXPECT_FALSE(v.is_text(ff));
}

TEST(HarmonyToolCalls, TheGuidesAndTheTemplatesCallsAreAccepted) {
  for (bool text : {false, true}) {
    const auto a = tools(text);
    EXPECT_TRUE(whole(a, kGuideCall)) << text;
    // Its stop token, where that is not an EOS id (here EOS is Qwen3's <|im_end|>); nothing after it.
    EXPECT_TRUE(whole(a, std::string(kGuideCall) + "<|call|>"));
    EXPECT_FALSE(whole(a, std::string(kGuideCall) + "<|call|><|start|>assistant"));
    // No analysis; the header as gpt-oss's chat template writes an assistant's call.
    EXPECT_TRUE(whole(a, " to=functions.get_weather<|channel|>commentary json<|message|>{\"location\": \"Tokyo\", "
                         "\"unit\": \"celsius\"}"));
    // A preamble before it, <|constrain|> left out, the other tool.
    EXPECT_TRUE(whole(a, "<|channel|>commentary<|message|>Checking the clock.<|end|><|start|>assistant"
                         "<|channel|>commentary to=functions.get_time<|message|>{}"));
  }
}

TEST(HarmonyToolCalls, TheCallIsRequiredUnlessStrictToolsUnderAuto) {
  const std::string answer = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>4.";
  EXPECT_FALSE(whole(tools(false), answer));
  EXPECT_TRUE(whole(tools(true), answer));
  // Analysis alone is no turn under required.
  EXPECT_FALSE(whole(tools(false), "<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant"));
}

TEST(HarmonyToolCalls, OnlyTheNamedFunction) {
  const auto a = tools(false, "get_time");
  EXPECT_FALSE(whole(a, kGuideCall));
  EXPECT_TRUE(whole(a, "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}"));
}

TEST(HarmonyToolCalls, RefusesTagsSpelledAsTextOtherToolsAndBadArguments) {
  const auto a = tools(false);
  Matcher m(std::make_shared<TokenMaskCache>(a, vocab()));
  std::vector<uint64_t> mask(vocab()->mask_words());
  m.fill_mask(mask.data());
  auto allowed = [&](int32_t id) { return (mask[size_t(id) >> 6] >> (id & 63)) & 1; };
  // The first token: <|channel|> itself, never text that reads "<|channel|>", nor another tag.
  EXPECT_TRUE(allowed(id_of("<|channel|>")));
  EXPECT_FALSE(allowed(id_of("<|start|>")));
  const auto spelled = harmony_tokenizer().encode("<|", false);
  ASSERT_FALSE(spelled.empty());
  EXPECT_FALSE(allowed(spelled[0]));
  EXPECT_FALSE(allowed(harmony_tokenizer().eos_ids().at(0)));
  // The whole call with its tags as text pieces goes nowhere.
  EXPECT_EQ(run(a, harmony_tokenizer().encode("<|", false)).accepted, 0u);

  // A tool not offered, arguments missing a required key or off the schema.
  EXPECT_FALSE(whole(a, "<|channel|>commentary to=functions.get_news<|message|>{}"));
  EXPECT_FALSE(whole(a, "<|channel|>commentary to=functions.get_weather<|message|>{}"));
  EXPECT_FALSE(whole(a, "<|channel|>commentary to=functions.get_weather<|message|>{\"location\": \"X\", \"unit\": \"K\"}"));
  // A special token where the JSON string goes on.
  const auto head = harmony_tokens("<|channel|>commentary to=functions.get_weather<|message|>{\"location\": \"San");
  const Progress r = run(a, head);
  ASSERT_EQ(r.accepted, head.size());
  auto with_end = head;
  with_end.push_back(id_of("<|end|>"));
  EXPECT_EQ(run(a, with_end).accepted, head.size());
  // A message ends at its own tags: no <|end|> inside a header, no unknown channel.
  EXPECT_FALSE(whole(a, "<|channel|>thoughts<|message|>x<|end|><|start|>assistant" + std::string(kGuideCall)));
}

TEST(HarmonyResponseFormat, TheFinalMessageHoldsTheConstrainedAnswer) {
  const auto a = compile_constraint({ConstraintKind::kJsonSchema,
                                     R"({"type": "object", "properties": {"answer": {"type": "integer"}},
                                         "required": ["answer"]})",
                                     ReasoningPrefix::kHarmony});
  EXPECT_TRUE(whole(a, "<|channel|>analysis<|message|>2 + 2 is 4.<|end|><|start|>assistant"
                       "<|channel|>final<|message|>{\"answer\": 4}"));
  EXPECT_TRUE(whole(a, "<|channel|>final <|constrain|>json<|message|>{\"answer\": 4}"));
  EXPECT_TRUE(whole(a, "<|channel|>final<|message|>{\"answer\": 4}<|return|>"));
  EXPECT_FALSE(whole(a, "<|channel|>final<|message|>{\"answer\": 4}<|call|>"));
  EXPECT_FALSE(whole(a, "{\"answer\": 4}"));  // no header
  EXPECT_FALSE(whole(a, "<|channel|>final<|message|>{\"answer\": \"four\"}"));
  EXPECT_FALSE(whole(a, "<|channel|>analysis<|message|>2 + 2 is 4.<|end|><|start|>assistant"));
}

// llama.cpp's GBNF names a special token by its text (<|end|>): that token, never text reading the same.
TEST(GbnfSpecialTokens, ATokenByItsTextIsThatTokenOnly) {
  const auto a = compile_constraint(
      {ConstraintKind::kEbnf, R"(root ::= <|channel|> "final" <|message|> [0-9]+ ("." | <|end|>))"});
  EXPECT_TRUE(whole(a, "<|channel|>final<|message|>42."));
  EXPECT_TRUE(whole(a, "<|channel|>final<|message|>42<|end|>"));
  // The same text as text tokens: refused at the first one.
  EXPECT_EQ(run(a, harmony_tokenizer().encode("<|", false)).accepted, 0u);
  // A quoted string is text, as before: its special token is not.
  const auto quoted = compile_constraint({ConstraintKind::kEbnf, R"(root ::= "<|end|>")"});
  EXPECT_FALSE(whole(quoted, "<|end|>"));
  EXPECT_EQ(gbnf_token_names(R"(root ::= <|a|> x <|b|>
x ::= <|a|> | "<|c|>")"),
            (std::vector<std::string>{"<|a|>", "<|b|>"}));
}

TEST(GbnfSpecialTokens, WhatIsNotSupportedIsNamed) {
  auto error_of = [](std::string_view text) {
    try {
      gbnf_token_names(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("root ::= <[200005]>").find("token ids (<[N]>) are not supported"), std::string::npos);
  EXPECT_NE(error_of("root ::= !<|end|>").find("negated tokens"), std::string::npos);
  EXPECT_NE(error_of("root ::= <|end|").find("unterminated token reference"), std::string::npos);
  EXPECT_NE(error_of("root ::= <>").find("expected a token's text"), std::string::npos);
  // Grammars nested in structural tags are not checked against the tokenizer: there it is refused.
  std::string nested = "no error";
  try {
    compile_constraint({ConstraintKind::kStructuralTag,
                        R"({"type": "structural_tag", "format": {"type": "grammar", "grammar": "root ::= <|end|>"}})"});
  } catch (const Error& e) {
    nested = e.what();
  }
  EXPECT_NE(nested.find("token references (<...>) are not supported here"), std::string::npos) << nested;
}

}  // namespace
}  // namespace dpserve::constrain
