// The chat output parser: reasoning / content / tool calls as the formats define them (Qwen3's
// <think> tags, Hermes' <tool_call> JSON blocks, Llama 3.1's JSON objects, DeepSeek-V3 / V3.1's
// <｜tool▁calls▁begin｜> sections, Mistral's [TOOL_CALLS] arrays), and streaming: feeding
// the text in any split yields the same reasoning, content and calls as feeding it whole.
#include "server/chat_output.h"

#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {
namespace {

const std::vector<std::string> kTools = {"get_weather", "get_time"};

ChatDelta whole(ReasoningParser r, ToolCallParser t, const std::string& text, bool in_reasoning = false,
                const std::vector<nlohmann::ordered_json>& params = {}) {
  ChatOutputParser p(r, t, kTools, in_reasoning, 7);
  p.set_tool_parameters(params);
  ChatDelta a = p.feed(text), b = p.finish();
  a.reasoning += b.reasoning;
  a.content += b.content;
  for (auto& c : b.tool_calls) a.tool_calls.push_back(c);
  return a;
}

// The same text fed in random pieces (and byte by byte), deltas concatenated.
void expect_streams_alike(ReasoningParser r, ToolCallParser t, const std::string& text, bool in_reasoning = false,
                          const std::vector<nlohmann::ordered_json>& params = {}) {
  const ChatDelta ref = whole(r, t, text, in_reasoning, params);
  std::mt19937 rng(1);
  for (int trial = 0; trial < 30; ++trial) {
    ChatOutputParser p(r, t, kTools, in_reasoning, 7);
    p.set_tool_parameters(params);
    ChatDelta acc;
    auto add = [&](ChatDelta d) {
      acc.reasoning += d.reasoning;
      acc.content += d.content;
      for (auto& c : d.tool_calls) acc.tool_calls.push_back(c);
    };
    for (size_t i = 0; i < text.size();) {
      const size_t n = trial == 0 ? 1 : std::uniform_int_distribution<size_t>(1, 9)(rng);
      add(p.feed(text.substr(i, n)));
      i += n;
    }
    add(p.finish());
    EXPECT_EQ(acc.reasoning, ref.reasoning) << text;
    EXPECT_EQ(acc.content, ref.content) << text;
    ASSERT_EQ(acc.tool_calls.size(), ref.tool_calls.size()) << text;
    for (size_t k = 0; k < acc.tool_calls.size(); ++k) {
      EXPECT_EQ(acc.tool_calls[k].name, ref.tool_calls[k].name);
      EXPECT_EQ(acc.tool_calls[k].arguments, ref.tool_calls[k].arguments);
      EXPECT_EQ(acc.tool_calls[k].id, ref.tool_calls[k].id);
    }
  }
}

TEST(ChatOutput, HermesToolCalls) {
  const std::string text =
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kHermes, text);
  EXPECT_EQ(d.content, "Let me check.\n");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[0].arguments), nlohmann::json({{"city", "Paris"}, {"days", 2}}));
  EXPECT_EQ(d.tool_calls[1].arguments, "{}");
  EXPECT_EQ(d.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(d.tool_calls[0].id.size(), 29u);
  EXPECT_NE(d.tool_calls[0].id, d.tool_calls[1].id);
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kHermes, text);
}

// `arguments` is always JSON text, as OpenAI's clients parse it: a string is its JSON literal unless
// it holds an object (models that quote their arguments), a value is kept exactly as written (an
// integer past 64 bits is not turned into a double; whitespace outside strings dropped, as a
// re-serialization would), no arguments are {}.
TEST(ChatOutput, ArgumentsAreJsonTextExactlyAsWritten) {
  auto args_of = [](const std::string& inner) {
    const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kHermes,
                              "<tool_call>\n{\"name\": \"get_weather\"" + inner + "}\n</tool_call>");
    EXPECT_EQ(d.tool_calls.size(), 1u) << inner;
    return d.tool_calls.empty() ? std::string("<none>") : d.tool_calls[0].arguments;
  };
  EXPECT_EQ(args_of(", \"arguments\": \"hello\""), "\"hello\"");
  EXPECT_EQ(args_of(", \"arguments\": \"{\\\"city\\\": \\\"Oslo\\\"}\""), "{\"city\": \"Oslo\"}");
  EXPECT_EQ(args_of(", \"arguments\": {\"order_id\": 98765432109876543210}"), "{\"order_id\":98765432109876543210}");
  EXPECT_EQ(args_of(", \"arguments\": [1, {\"a\": \"} \\\" \"}]"), "[1,{\"a\":\"} \\\" \"}]");
  EXPECT_EQ(args_of(", \"arguments\": null "), "null");
  EXPECT_EQ(args_of(""), "{}");
  EXPECT_EQ(args_of(", \"x\": {\"arguments\": 1}, \"arguments\": {\"city\": \"a, b\"}"), "{\"city\":\"a, b\"}");
}

// parallel_tool_calls false: the turn's first call, whatever the model wrote after it.
TEST(ChatOutput, SingleCallKeepsTheFirst) {
  const std::string text =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  ChatOutputParser p(ReasoningParser::kNone, ToolCallParser::kHermes, kTools, false, 7, true);
  ChatDelta a = p.feed(text), b = p.finish();
  for (auto& c : b.tool_calls) a.tool_calls.push_back(c);
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0].name, "get_weather");
  EXPECT_EQ(whole(ReasoningParser::kNone, ToolCallParser::kHermes, text).tool_calls.size(), 2u);
}

// Whitespace between calls is the format's; after text that follows a call it is the model's. Fed
// whole or in pieces, the newline before a second block that is not a call stays (found by
// fuzz_chat_output: the stream dropped it).
TEST(ChatOutput, WhitespaceAfterTextBetweenCallsIsContentInAnySplit) {
  const std::string call = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  const std::string text = call + " see p\n<tool_call>\nnot json\n</tool_call>\n" + call + "\n";
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kHermes, text);
  EXPECT_EQ(d.content, " see p\n<tool_call>\nnot json\n</tool_call>\n");
  EXPECT_EQ(d.tool_calls.size(), 2u);
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kHermes, text);
}

TEST(ChatOutput, HermesLeavesWhatIsNotACallAsText) {
  // An unknown tool, broken JSON, a lone tag: text, as written.
  for (const std::string text : {"<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>",
                                 "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {</tool_call> after",
                                 "a < b and <tool_ x", "no calls here"}) {
    const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kHermes, text);
    EXPECT_TRUE(d.tool_calls.empty()) << text;
    EXPECT_EQ(d.content, text);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kHermes, text);
  }
  // The output ended before the closing tag (EOS): a complete call still counts.
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kHermes,
                            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.content, "");
}

TEST(ChatOutput, HermesCloseTagInsideAJsonStringIsData) {
  // An argument whose text holds the closing tag (and an escaped quote before it): the block ends at
  // the tag after the JSON, not inside the string (issue 36: the call was cut there and became text).
  const std::string args = R"J({"code": "print(\"</tool_call>\")", "note": "a </tool_call> b"})J";
  const std::string text = "Run it.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": " + args +
                           "}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>";
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kHermes, text);
  EXPECT_EQ(d.content, "Run it.\n");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_time");
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[0].arguments), nlohmann::json::parse(args));
  EXPECT_EQ(d.tool_calls[1].name, "get_weather");
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kHermes, text);
  // Not JSON (an unbalanced quote): the first closing tag still ends the block, as text.
  const std::string odd = "<tool_call>\n{\"name\": \"get_time\", \"x</tool_call> after";
  const ChatDelta o = whole(ReasoningParser::kNone, ToolCallParser::kHermes, odd);
  EXPECT_TRUE(o.tool_calls.empty());
  EXPECT_EQ(o.content, odd);
}

TEST(ChatOutput, Qwen3Reasoning) {
  const std::string text = "<think>\nThe user wants the time.\n</think>\n\nIt is noon.";
  const ChatDelta d = whole(ReasoningParser::kQwen3, ToolCallParser::kNone, text);
  EXPECT_EQ(d.reasoning, "\nThe user wants the time.\n");
  EXPECT_EQ(d.content, "It is noon.");
  expect_streams_alike(ReasoningParser::kQwen3, ToolCallParser::kNone, text);
  // No <think> at the start: all content. Opened by the prompt: reasoning until </think>.
  EXPECT_EQ(whole(ReasoningParser::kQwen3, ToolCallParser::kNone, "Hi <think>x</think>").content, "Hi <think>x</think>");
  const ChatDelta p = whole(ReasoningParser::kQwen3, ToolCallParser::kNone, "hmm</think>\n\nok", true);
  EXPECT_EQ(p.reasoning, "hmm");
  EXPECT_EQ(p.content, "ok");
  // Unfinished thinking is reasoning.
  EXPECT_EQ(whole(ReasoningParser::kQwen3, ToolCallParser::kNone, "<think>still going").reasoning, "still going");
}

TEST(ChatOutput, ReasoningThenToolCall) {
  const std::string text =
      "<think>I should call it.</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Oslo\"}}\n</tool_call>";
  const ChatDelta d = whole(ReasoningParser::kQwen3, ToolCallParser::kHermes, text);
  EXPECT_EQ(d.reasoning, "I should call it.");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  expect_streams_alike(ReasoningParser::kQwen3, ToolCallParser::kHermes, text);
}

TEST(ChatOutput, WhitespaceOnlyOutputIsContent) {
  // An output that is only whitespace, with no <think> or <tool_call> after it, is what the model wrote:
  // content, as OpenAI and SGLang's parsers return it (they strip tags and their blocks, nothing else).
  const std::pair<ReasoningParser, ToolCallParser> parsers[] = {{ReasoningParser::kQwen3, ToolCallParser::kNone},
                                                                {ReasoningParser::kNone, ToolCallParser::kHermes},
                                                                {ReasoningParser::kQwen3, ToolCallParser::kHermes},
                                                                {ReasoningParser::kNone, ToolCallParser::kLlama3},
                                                                {ReasoningParser::kQwen3, ToolCallParser::kDeepSeekV3},
                                                                {ReasoningParser::kNone, ToolCallParser::kDeepSeekV31},
                                                                {ReasoningParser::kNone, ToolCallParser::kMistral}};
  for (const auto& [r, t] : parsers)
    for (const std::string text : {"\n\n\n", "\n", " ", "\n \n", "\n\n ", " \t\r\n"}) {
      const ChatDelta d = whole(r, t, text);
      EXPECT_EQ(d.content, text) << int(r) << int(t);
      EXPECT_EQ(d.reasoning, "");
      EXPECT_TRUE(d.tool_calls.empty());
      expect_streams_alike(r, t, text);
    }
}

TEST(ChatOutput, WhitespaceBeforeABlockOrAfterThinking) {
  // Whitespace before an opening <think> is not content; nor are the newlines after </think> (the
  // template's separator), also when nothing follows them.
  const std::string think = "\n\n<think>x</think>\n\nok";
  EXPECT_EQ(whole(ReasoningParser::kQwen3, ToolCallParser::kNone, think).reasoning, "x");
  EXPECT_EQ(whole(ReasoningParser::kQwen3, ToolCallParser::kNone, think).content, "ok");
  expect_streams_alike(ReasoningParser::kQwen3, ToolCallParser::kNone, think);
  for (const std::string text : {"<think>x</think>\n\n", " <think>x</think>\n"}) {
    const ChatDelta d = whole(ReasoningParser::kQwen3, ToolCallParser::kHermes, text);
    EXPECT_EQ(d.reasoning, "x") << text;
    EXPECT_EQ(d.content, "") << text;
    expect_streams_alike(ReasoningParser::kQwen3, ToolCallParser::kHermes, text);
  }
  const ChatDelta opened = whole(ReasoningParser::kQwen3, ToolCallParser::kNone, "hmm</think>\n\n", true);
  EXPECT_EQ(opened.reasoning, "hmm");
  EXPECT_EQ(opened.content, "");
  // Newlines that open the output and lead into a tool call: not content (the message's content is null).
  const std::string call = "\n\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  for (const ReasoningParser r : {ReasoningParser::kNone, ReasoningParser::kQwen3}) {
    const ChatDelta d = whole(r, ToolCallParser::kHermes, call);
    ASSERT_EQ(d.tool_calls.size(), 1u);
    EXPECT_EQ(d.content, "");
    expect_streams_alike(r, ToolCallParser::kHermes, call);
  }
}

TEST(ChatOutput, Llama3JsonCalls) {
  const std::string text =
      "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo; Norway\"}}; {\"name\": \"get_time\", "
      "\"parameters\": {}}";
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kLlama3, text);
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[0].arguments)["city"], "Oslo; Norway");
  EXPECT_EQ(d.content, "");
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kLlama3, text);
  for (const std::string plain : {"The answer is {x}.", "{\"name\": \"other\", \"parameters\": {}}", "{not json"}) {
    const ChatDelta p = whole(ReasoningParser::kNone, ToolCallParser::kLlama3, plain);
    EXPECT_TRUE(p.tool_calls.empty()) << plain;
    EXPECT_EQ(p.content, plain);
  }
}

// DeepSeek-V3's tool tags as its tokenizer defines them and its chat template writes an assistant's
// tool_calls: "<｜tool▁call▁begin｜>" + type + "<｜tool▁sep｜>" + name + "\n```json\n" + arguments +
// "\n```<｜tool▁call▁end｜>", calls a newline apart, inside <｜tool▁calls▁begin｜> ... <｜tool▁calls▁end｜>.
const std::string kDsBegin = "<｜tool▁calls▁begin｜>", kDsEnd = "<｜tool▁calls▁end｜>";
std::string ds_v3_call(const std::string& name, const std::string& args) {
  return "<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + name + "\n```json\n" + args + "\n```<｜tool▁call▁end｜>";
}
// DeepSeek-V3.1 (SGLang's deepseekv31 detector): "<｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>" + arguments
// + "<｜tool▁call▁end｜>", calls back to back.
std::string ds_v31_call(const std::string& name, const std::string& args) {
  return "<｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>" + args + "<｜tool▁call▁end｜>";
}

TEST(ChatOutput, DeepSeekV3ToolCalls) {
  // Arguments with a string holding the closing tags (data, not the end of the call) and a big integer.
  const std::string text = "Let me check.\n" + kDsBegin +
                           ds_v3_call("get_weather", "{\"city\": \"Paris <｜tool▁call▁end｜>\\\"\", \"n\": 123456789012345678901}") +
                           "\n" + ds_v3_call("get_time", "{}") + kDsEnd;
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, text);
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.content, "Let me check.\n");
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"city\":\"Paris <｜tool▁call▁end｜>\\\"\",\"n\":123456789012345678901}");
  EXPECT_EQ(d.tool_calls[1].name, "get_time");
  EXPECT_EQ(d.tool_calls[1].arguments, "{}");
  EXPECT_NE(d.tool_calls[0].id, d.tool_calls[1].id);
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, text);
  // As the model ends a turn, with the end-of-sentence token's text (not skipped: it is removed elsewhere);
  // also without the section's closing tag (EOS right after the last call).
  for (const std::string t : {kDsBegin + ds_v3_call("get_time", "{}") + kDsEnd, kDsBegin + ds_v3_call("get_time", "{}")}) {
    const ChatDelta o = whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, t);
    ASSERT_EQ(o.tool_calls.size(), 1u) << t;
    EXPECT_EQ(o.content, "");
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, t);
  }
  // With DeepSeek-R1's reasoning first.
  const std::string r1 = "<think>need weather</think>\n\n" + kDsBegin + ds_v3_call("get_weather", "{\"city\": \"Oslo\"}") + kDsEnd;
  const ChatDelta r = whole(ReasoningParser::kQwen3, ToolCallParser::kDeepSeekV3, r1);
  EXPECT_EQ(r.reasoning, "need weather");
  EXPECT_EQ(r.content, "");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
  expect_streams_alike(ReasoningParser::kQwen3, ToolCallParser::kDeepSeekV3, r1);
  // parallel_tool_calls false: the first call only.
  ChatOutputParser p(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, kTools, false, 7, true);
  ChatDelta a = p.feed(text), b = p.finish();
  EXPECT_EQ(a.tool_calls.size() + b.tool_calls.size(), 1u);
  EXPECT_EQ(a.content + b.content, "Let me check.\n");
}

TEST(ChatOutput, DeepSeekV3NonCallsStayText) {
  // An unknown tool, arguments that are not a JSON object, V3.1's form under V3, no fence: the text as written.
  for (const std::string call : {ds_v3_call("get_news", "{}"), ds_v3_call("get_time", "[1]"),
                                 ds_v3_call("get_time", "{oops"), ds_v31_call("get_time", "{}"),
                                 std::string("<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time {}<｜tool▁call▁end｜>")}) {
    const std::string text = "x " + kDsBegin + call + kDsEnd + " y";
    const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, text);
    EXPECT_TRUE(d.tool_calls.empty()) << call;
    EXPECT_EQ(d.content, text);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, text);
  }
  // Text that only looks like the start of a tag, and a lone section tag at the end.
  // Text that only looks like the start of a tag; sections with no call in them.
  for (const std::string text : {std::string("a <｜tool▁calls b"), std::string("<｜tool"), "ok " + kDsBegin,
                                 "ok " + kDsBegin + "\n", kDsBegin + kDsEnd, kDsBegin + " hi", kDsBegin + "\n" + kDsEnd + " x"}) {
    const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, text);
    EXPECT_TRUE(d.tool_calls.empty());
    EXPECT_EQ(d.content, text);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, text);
  }
  // A failed call after a good one: the good one is parsed, the other kept as text without the section tag.
  const std::string mixed = kDsBegin + ds_v3_call("get_time", "{}") + "\n" + ds_v3_call("get_news", "{}") + kDsEnd;
  const ChatDelta m = whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, mixed);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.content, ds_v3_call("get_news", "{}") + kDsEnd);
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, mixed);
  // Hermes' tags are plain text to this parser.
  const std::string hermes = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
  EXPECT_EQ(whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV3, hermes).content, hermes);
}

TEST(ChatOutput, DeepSeekV31ToolCalls) {
  const std::string text = "Sure." + kDsBegin + ds_v31_call("get_weather", "{\"city\": \"Tokyo\"}") +
                           ds_v31_call("get_weather", "{\"city\": \"Paris\"}") + kDsEnd;
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV31, text);
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.content, "Sure.");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"city\":\"Tokyo\"}");
  EXPECT_EQ(d.tool_calls[1].arguments, "{\"city\":\"Paris\"}");
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kDeepSeekV31, text);
  // V3's form is not V3.1's.
  const std::string v3 = kDsBegin + ds_v3_call("get_time", "{}") + kDsEnd;
  EXPECT_TRUE(whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV31, v3).tool_calls.empty());
  EXPECT_EQ(whole(ReasoningParser::kNone, ToolCallParser::kDeepSeekV31, v3).content, v3);
}

// Mistral (SGLang's mistral detector, Mistral's v3 tokenizer): "[TOOL_CALLS] " + a JSON array of
// {"name", "arguments"} objects.
TEST(ChatOutput, MistralToolCalls) {
  const std::string text =
      "Checking. [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo]\", \"n\": 98765432109876543210}}, "
      "{\"name\": \"get_time\", \"arguments\": {}, \"id\": \"abcDEF123\"}]";
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kMistral, text);
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.content, "Checking. ");
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"city\":\"Oslo]\",\"n\":98765432109876543210}");
  EXPECT_EQ(d.tool_calls[1].name, "get_time");
  EXPECT_EQ(d.tool_calls[1].arguments, "{}");
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kMistral, text);
  ChatOutputParser p(ReasoningParser::kNone, ToolCallParser::kMistral, kTools, false, 7, true);
  ChatDelta a = p.feed(text), b = p.finish();
  EXPECT_EQ(a.tool_calls.size() + b.tool_calls.size(), 1u);
  // Not calls: an unknown tool (all or none), not an array, an empty or unclosed array, a bare tag.
  for (const std::string t : {std::string("[TOOL_CALLS] [{\"name\": \"get_time\", \"arguments\": {}}, {\"name\": \"x\"}]"),
                              std::string("[TOOL_CALLS] {\"name\": \"get_time\", \"arguments\": {}}"),
                              std::string("[TOOL_CALLS] [] then"), std::string("[TOOL_CALLS] [{\"name\": \"get_time\""),
                              std::string("a [TOOL_CALLS]"), std::string("[TOOL_ b")}) {
    const ChatDelta n = whole(ReasoningParser::kNone, ToolCallParser::kMistral, t);
    EXPECT_TRUE(n.tool_calls.empty()) << t;
    EXPECT_EQ(n.content, t);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kMistral, t);
  }
}

// Mistral's tokenizer v11 and later (Mistral-Small-3.2, Magistral, Devstral) write each call as
// [TOOL_CALLS]NAME[ARGS]{...}; a decoder that skips special tokens leaves out [ARGS] (the form
// vLLM's mistral parser tests use: "[TOOL_CALLS]add{\"a\": 3.5, \"b\": 4}[TOOL_CALLS]multiply{...}").
TEST(ChatOutput, MistralNamedToolCalls) {
  const std::string text =
      "Checking. [TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo}\", \"n\": [1, {\"x\": 2}]}[TOOL_CALLS]get_time[ARGS]{}";
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kMistral, text);
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.content, "Checking. ");
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"city\":\"Oslo}\",\"n\":[1,{\"x\":2}]}");
  EXPECT_EQ(d.tool_calls[1].name, "get_time");
  EXPECT_EQ(d.tool_calls[1].arguments, "{}");
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kMistral, text);
  const ChatDelta skipped = whole(ReasoningParser::kNone, ToolCallParser::kMistral,
                                  "[TOOL_CALLS]get_time{\"tz\": \"UTC\"}\n[TOOL_CALLS]get_weather{\"city\": \"Rome\"}");
  ASSERT_EQ(skipped.tool_calls.size(), 2u);
  EXPECT_EQ(skipped.content, "");
  EXPECT_EQ(skipped.tool_calls[0].arguments, "{\"tz\":\"UTC\"}");
  EXPECT_EQ(skipped.tool_calls[1].name, "get_weather");
  // Not calls: an unknown tool, arguments that are not an object, arguments that never close, a
  // name without arguments, a space before the name.
  for (const std::string t :
       {std::string("[TOOL_CALLS]get_date[ARGS]{}"), std::string("[TOOL_CALLS]get_time[ARGS]\"UTC\""),
        std::string("[TOOL_CALLS]get_time[ARGS]{\"tz\": \"U"), std::string("[TOOL_CALLS]get_time"),
        std::string("[TOOL_CALLS]get_time[AR"), std::string("[TOOL_CALLS] get_time[ARGS]{}")}) {
    const ChatDelta n = whole(ReasoningParser::kNone, ToolCallParser::kMistral, t);
    EXPECT_TRUE(n.tool_calls.empty()) << t;
    EXPECT_EQ(n.content, t);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kMistral, t);
  }
}

// Qwen3-Coder: <function=NAME> and <parameter=KEY> blocks, each value on lines of its own (the one
// newline after the opening tag and before the closing one are the format's), typed by the tool's
// schema as SGLang's and vLLM's qwen3_coder parsers type them: a string is the text as written
// (quotes, braces and newlines in it included), an integer / number / boolean / object / array is read
// as JSON (a boolean in any case), text that does not read as its type stays a string, and "null" is
// null unless the parameter is a string only.
const std::vector<nlohmann::ordered_json> kCoderParams = {
    nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "city": {"type": "string"}, "days": {"type": "integer"}, "scale": {"type": "number"},
      "metric": {"type": "boolean"}, "where": {"type": "object"}, "hours": {"type": "array"},
      "note": {"type": ["string", "null"]}, "unit": {"enum": ["celsius", "fahrenheit"]}}})"),
    nlohmann::ordered_json::parse(R"({"type": "object", "properties": {"tz": {"type": "string"}}})")};

std::string coder_call(const std::string& name, const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string s = "<tool_call>\n<function=" + name + ">\n";
  for (const auto& [k, v] : kv) s += "<parameter=" + k + ">\n" + v + "\n</parameter>\n";
  return s + "</function>\n</tool_call>";
}

TEST(ChatOutput, Qwen3CoderToolCalls) {
  const std::string text =
      "I will look.\n" +
      coder_call("get_weather", {{"city", "Paris \"rive gauche\"\n{not json"}, {"days", "3"}, {"scale", "1.50"},
                                 {"metric", "True"}, {"where", "{\"lat\": 48.85, \"lon\": 2.35}"},
                                 {"hours", "[9, 12]"}, {"note", "null"}, {"unit", "celsius"}}) +
      "\n" + coder_call("get_time", {{"tz", "null"}});
  const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, text, false, kCoderParams);
  EXPECT_EQ(d.content, "I will look.\n");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments,
            R"({"city":"Paris \"rive gauche\"\n{not json","days":3,"scale":1.50,"metric":true,)"
            R"("where":{"lat":48.85,"lon":2.35},"hours":[9,12],"note":null,"unit":"celsius"})");
  EXPECT_EQ(d.tool_calls[1].name, "get_time");
  EXPECT_EQ(d.tool_calls[1].arguments, R"({"tz":"null"})");  // a string only: the word
  EXPECT_EQ(d.tool_calls[0].id.rfind("call_", 0), 0u);
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, text, false, kCoderParams);
  // Text that does not read as its type stays the text; a parameter the schema does not declare is a
  // string; no schemas at all: every value a string.
  const std::string odd = coder_call("get_weather", {{"days", "three"}, {"metric", "yes"}, {"extra", "42"}});
  EXPECT_EQ(whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, odd, false, kCoderParams).tool_calls.at(0).arguments,
            R"({"days":"three","metric":"yes","extra":"42"})");
  EXPECT_EQ(whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, coder_call("get_weather", {{"days", "3"}}))
                .tool_calls.at(0)
                .arguments,
            R"({"days":"3"})");
  // No parameters: an empty object.
  EXPECT_EQ(whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, coder_call("get_time", {}), false, kCoderParams)
                .tool_calls.at(0)
                .arguments,
            "{}");
}

TEST(ChatOutput, Qwen3CoderEndsAndNonCalls) {
  // The output ended after </function> without </tool_call> (EOS), or a value's closing tag was left
  // out: still a call.
  const ChatDelta eos = whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder,
                              "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n"
                              "<parameter=days>\n2\n</function>",
                              false, kCoderParams);
  ASSERT_EQ(eos.tool_calls.size(), 1u);
  EXPECT_EQ(eos.tool_calls[0].arguments, R"({"city":"Oslo","days":2})");
  EXPECT_EQ(eos.content, "");
  // An unknown function, Hermes' JSON inside the tags, text after </function>, a repeated parameter, a
  // call cut off before </function> (max_tokens: its last value may be partial): text.
  for (const std::string text :
       {coder_call("rm_rf", {{"path", "/"}}),
        std::string("<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n<parameter=days>\n2"),
        std::string("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"),
        std::string("<tool_call>\n<function=get_time>\n</function> trailing\n</tool_call>"),
        coder_call("get_weather", {{"city", "a"}, {"city", "b"}})}) {
    const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, text, false, kCoderParams);
    EXPECT_TRUE(d.tool_calls.empty()) << text;
    EXPECT_EQ(d.content, text);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, text, false, kCoderParams);
  }
  // With reasoning first, and parallel_tool_calls false keeping the first call.
  const std::string two = coder_call("get_time", {{"tz", "UTC"}}) + "\n" + coder_call("get_time", {{"tz", "CET"}});
  const ChatDelta r = whole(ReasoningParser::kQwen3, ToolCallParser::kQwen3Coder, "<think>hm</think>\n\n" + two, false,
                            kCoderParams);
  EXPECT_EQ(r.reasoning, "hm");
  EXPECT_EQ(r.tool_calls.size(), 2u);
  ChatOutputParser p(ReasoningParser::kNone, ToolCallParser::kQwen3Coder, kTools, false, 7, true);
  p.set_tool_parameters(kCoderParams);
  ChatDelta a = p.feed(two), b = p.finish();
  for (auto& c : b.tool_calls) a.tool_calls.push_back(c);
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0].arguments, R"({"tz":"UTC"})");
}

// GLM-4.5 / 4.6: <tool_call>NAME, then <arg_key>KEY</arg_key> <arg_value>VALUE</arg_value> pairs, each tag
// on a line of its own (GLM-4.5's chat template writes an assistant's tool_calls so; GLM-4.7 drops the line
// breaks), values written whole between their tags and typed by the tool's schema as Qwen3-Coder's are
// (SGLang's glm45 detector: a string parameter is the raw text, any other is read as JSON).
std::string glm_call(const std::string& name, const std::vector<std::pair<std::string, std::string>>& kv,
                     const std::string& nl = "\n") {
  std::string s = "<tool_call>" + name + nl;
  for (const auto& [k, v] : kv) s += "<arg_key>" + k + "</arg_key>" + nl + "<arg_value>" + v + "</arg_value>" + nl;
  return s + "</tool_call>";
}

TEST(ChatOutput, Glm45ToolCalls) {
  // The format's own example (SGLang's and vLLM's tests of their GLM-4.5 parsers use this call).
  const std::string example =
      "Let me search for that.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n"
      "<arg_key>date</arg_key>\n<arg_value>2024-12-25</arg_value>\n</tool_call>\nThe weather will be...";
  const ChatDelta e = whole(ReasoningParser::kNone, ToolCallParser::kGlm45, example, false, kCoderParams);
  EXPECT_EQ(e.content, "Let me search for that.\n\nThe weather will be...");
  ASSERT_EQ(e.tool_calls.size(), 1u);
  EXPECT_EQ(e.tool_calls[0].name, "get_weather");
  EXPECT_EQ(e.tool_calls[0].arguments, R"({"city":"Beijing","date":"2024-12-25"})");
  expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kGlm45, example, false, kCoderParams);
  // Typed values (a string keeps its quotes, braces and line breaks), two calls, reasoning first; GLM-4.7's
  // unbroken lines read the same under either name.
  const std::vector<std::pair<std::string, std::string>> kv = {
      {"city", "Paris \"rive gauche\"\n{not json"}, {"days", "3"}, {"scale", "1.50"}, {"metric", "true"},
      {"where", "{\"lat\": 48.85, \"lon\": 2.35}"}, {"hours", "[9, 12]"}, {"note", "null"}, {"unit", "celsius"}};
  const std::string want = R"({"city":"Paris \"rive gauche\"\n{not json","days":3,"scale":1.50,"metric":true,)"
                           R"("where":{"lat":48.85,"lon":2.35},"hours":[9,12],"note":null,"unit":"celsius"})";
  for (const std::string nl : {"\n", ""})
    for (const ToolCallParser t : {ToolCallParser::kGlm45, ToolCallParser::kGlm47}) {
      const std::string text =
          "<think>the user wants weather</think>" + glm_call("get_weather", kv, nl) + "\n" + glm_call("get_time", {}, nl);
      const ChatDelta d = whole(ReasoningParser::kQwen3, t, text, false, kCoderParams);
      EXPECT_EQ(d.reasoning, "the user wants weather");
      EXPECT_EQ(d.content, "");  // the line between two calls is the format's, not content
      ASSERT_EQ(d.tool_calls.size(), 2u) << text;
      EXPECT_EQ(d.tool_calls[0].arguments, want);
      EXPECT_EQ(d.tool_calls[1].name, "get_time");
      EXPECT_EQ(d.tool_calls[1].arguments, "{}");
      expect_streams_alike(ReasoningParser::kQwen3, t, text, false, kCoderParams);
    }
  // Not calls, kept as text: an unknown tool, a repeated key, a value or key left open, a value without its
  // key, Qwen3-Coder's blocks under the GLM parser.
  for (const std::string text :
       {glm_call("rm_rf", {{"path", "/"}}), glm_call("get_time", {{"tz", "a"}, {"tz", "b"}}),
        std::string("<tool_call>get_time\n<arg_key>tz</arg_key>\n<arg_value>UTC\n</tool_call>"),
        std::string("<tool_call>get_time\n<arg_key>tz\n<arg_value>UTC</arg_value>\n</tool_call>"),
        std::string("<tool_call>get_time\n<arg_value>UTC</arg_value>\n</tool_call>"),
        coder_call("get_time", {{"tz", "UTC"}})}) {
    const ChatDelta d = whole(ReasoningParser::kNone, ToolCallParser::kGlm45, text, false, kCoderParams);
    EXPECT_TRUE(d.tool_calls.empty()) << text;
    EXPECT_EQ(d.content, text);
    expect_streams_alike(ReasoningParser::kNone, ToolCallParser::kGlm45, text, false, kCoderParams);
  }
  // The flag names, and the tags a GLM tokenizer may hold as tokens (kept in the text when special).
  EXPECT_EQ(parse_tool_call_parser("glm45"), ToolCallParser::kGlm45);
  EXPECT_EQ(parse_tool_call_parser("glm47"), ToolCallParser::kGlm47);
  EXPECT_EQ(parse_reasoning_parser("glm45"), ReasoningParser::kQwen3);
  EXPECT_EQ(tool_call_markers(ToolCallParser::kGlm45).size(), 6u);
}

// nlohmann's reader takes a NUL byte for the end of its input: JSON, a NUL, then anything would
// pass as the JSON, and the arguments handed on with the rest were not JSON text (found by
// fuzz_chat_output). A block holding a NUL where JSON is read stays text, in every format.
TEST(ChatOutput, ANulByteAfterJsonIsNotACall) {
  const std::string nul("\0x", 2);
  const std::string hermes = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}" + nul + "\n</tool_call>";
  const std::string v31 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}" + nul +
                          "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  for (const auto& [t, text] : std::vector<std::pair<ToolCallParser, std::string>>{
           {ToolCallParser::kHermes, hermes}, {ToolCallParser::kDeepSeekV31, v31}}) {
    const ChatDelta d = whole(ReasoningParser::kNone, t, text);
    EXPECT_TRUE(d.tool_calls.empty()) << d.tool_calls.at(0).arguments;
    EXPECT_EQ(d.content, text);
  }
  // Qwen3-Coder: such a value is not JSON, so it is kept as a string.
  const ChatDelta c = whole(ReasoningParser::kNone, ToolCallParser::kQwen3Coder,
                            coder_call("get_weather", {{"where", "{\"a\": 1}" + nul}}), false, kCoderParams);
  ASSERT_EQ(c.tool_calls.size(), 1u);
  EXPECT_EQ(c.tool_calls[0].arguments, R"({"where":"{\"a\": 1}\u0000x"})");
}

// Mistral's chat templates raise unless every tool call id in the history is 9 alphanumerics
// ("Tool call IDs should be alphanumeric strings with length 9!"); other formats keep OpenAI's
// "call_" + 24.
TEST(ChatOutput, ToolCallIdsFollowTheFormat) {
  const ChatDelta m = whole(ReasoningParser::kNone, ToolCallParser::kMistral,
                            "[TOOL_CALLS] [{\"name\": \"get_time\", \"arguments\": {}}, {\"name\": \"get_time\", \"arguments\": {}}]");
  ASSERT_EQ(m.tool_calls.size(), 2u);
  for (const auto& c : m.tool_calls) {
    EXPECT_EQ(c.id.size(), 9u) << c.id;
    EXPECT_TRUE(std::all_of(c.id.begin(), c.id.end(), [](char ch) { return std::isalnum((unsigned char)ch); })) << c.id;
  }
  EXPECT_NE(m.tool_calls[0].id, m.tool_calls[1].id);
  const ChatDelta h = whole(ReasoningParser::kNone, ToolCallParser::kHermes,
                            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(h.tool_calls.size(), 1u);
  EXPECT_EQ(h.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(h.tool_calls[0].id.size(), 29u);
}

// gpt-oss's harmony format (OpenAI's "harmony response format" guide, whose examples these are): the
// analysis channel is the chain of thought, final the answer; a message to functions.NAME is a call
// (the recipient in the channel part or the role part of the header, <|constrain|>json or a bare
// content type); <|return|> / <|call|> are stop tokens, usually cut from the text, so both forms are fed.
const ReasoningParser kHarmonyR = ReasoningParser::kGptOss;
const ToolCallParser kHarmonyT = ToolCallParser::kGptOss;

TEST(ChatOutput, GptOssAnalysisThenFinal) {
  const std::string body =
      "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.";
  for (const std::string& text : {body, body + "<|return|>",
                                  // The guide shows a line break between the messages.
                                  std::string(body).insert(body.find("<|start|>"), "\n")}) {
    const ChatDelta d = whole(kHarmonyR, ToolCallParser::kNone, text);
    EXPECT_EQ(d.reasoning, "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.") << text;
    EXPECT_EQ(d.content, "2 + 2 = 4.") << text;
    EXPECT_TRUE(d.tool_calls.empty());
    expect_streams_alike(kHarmonyR, ToolCallParser::kNone, text);
  }
  // Several analysis messages are one reasoning text; a final message alone is all content.
  const ChatDelta two = whole(kHarmonyR, ToolCallParser::kNone,
                              "<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>analysis<|message|>b"
                              "<|end|><|start|>assistant<|channel|>final<|message|>c");
  EXPECT_EQ(two.reasoning, "ab");
  EXPECT_EQ(two.content, "c");
  const ChatDelta fin = whole(kHarmonyR, ToolCallParser::kNone, "<|channel|>final<|message|>Hi <b>there</b> x<|y");
  EXPECT_EQ(fin.reasoning, "");
  EXPECT_EQ(fin.content, "Hi <b>there</b> x<|y");
  expect_streams_alike(kHarmonyR, ToolCallParser::kNone, "<|channel|>final<|message|>Hi <b>there</b> x<|y");
}

TEST(ChatOutput, GptOssToolCalls) {
  const std::string call =
      "<|channel|>analysis<|message|>Need to use function get_weather.<|end|><|start|>assistant<|channel|>commentary "
      "to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"San Francisco\"}";
  for (const std::string& text : {call, call + "<|call|>"}) {
    const ChatDelta d = whole(kHarmonyR, kHarmonyT, text);
    EXPECT_EQ(d.reasoning, "Need to use function get_weather.");
    EXPECT_EQ(d.content, "");
    ASSERT_EQ(d.tool_calls.size(), 1u) << text;
    EXPECT_EQ(d.tool_calls[0].name, "get_weather");
    EXPECT_EQ(nlohmann::json::parse(d.tool_calls[0].arguments), nlohmann::json({{"location", "San Francisco"}}));
    EXPECT_EQ(d.tool_calls[0].id.rfind("call_", 0), 0u);
    expect_streams_alike(kHarmonyR, kHarmonyT, text);
  }
  // The recipient in the role part of the header, a bare content type; a preamble on the
  // commentary channel (no recipient) is content; two calls in one turn.
  const std::string two =
      "<|channel|>commentary<|message|>Checking both.<|end|><|start|>assistant to=functions.get_time<|channel|>"
      "commentary json<|message|>{\"tz\": \"UTC\"}<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather "
      "<|constrain|>json<|message|>{\"location\": \"Tokyo\", \"days\": [1, 2]}<|call|>";
  const ChatDelta d = whole(kHarmonyR, kHarmonyT, two);
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Checking both.");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_time");
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[0].arguments), nlohmann::json({{"tz", "UTC"}}));
  EXPECT_EQ(d.tool_calls[1].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[1].arguments),
            nlohmann::json({{"location", "Tokyo"}, {"days", {1, 2}}}));
  EXPECT_NE(d.tool_calls[0].id, d.tool_calls[1].id);
  expect_streams_alike(kHarmonyR, kHarmonyT, two);
}

TEST(ChatOutput, GptOssWhatIsNotACall) {
  // A function the request did not offer, arguments that are not a JSON object, or no tool parser:
  // the message's text is content. A built-in tool's message (browser, python) is reasoning.
  const std::string other = "<|channel|>commentary to=functions.send_email <|constrain|>json<|message|>{\"to\": \"x\"}";
  EXPECT_EQ(whole(kHarmonyR, kHarmonyT, other).content, "{\"to\": \"x\"}");
  EXPECT_TRUE(whole(kHarmonyR, kHarmonyT, other).tool_calls.empty());
  const std::string bad = "<|channel|>commentary to=functions.get_time<|message|>[1, 2]";
  EXPECT_EQ(whole(kHarmonyR, kHarmonyT, bad).content, "[1, 2]");
  const std::string ok = "<|channel|>commentary to=functions.get_time<|message|>{}";
  EXPECT_EQ(whole(kHarmonyR, kHarmonyT, ok).tool_calls.size(), 1u);
  EXPECT_EQ(whole(kHarmonyR, ToolCallParser::kNone, ok).content, "{}");
  EXPECT_TRUE(whole(kHarmonyR, ToolCallParser::kNone, ok).tool_calls.empty());
  const std::string browse =
      "<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant<|channel|>analysis to=browser.search "
      "<|constrain|>json<|message|>{\"query\": \"weather\"}";
  const ChatDelta b = whole(kHarmonyR, kHarmonyT, browse);
  EXPECT_EQ(b.reasoning, "Look it up.{\"query\": \"weather\"}");
  EXPECT_EQ(b.content, "");
  EXPECT_TRUE(b.tool_calls.empty());
  // Such a message's text stays where it was written, between the content before and after it.
  const std::string between = "<|channel|>commentary<|message|>A<|end|><|start|>assistant<|channel|>commentary "
                              "to=functions.nope<|message|>{}<|end|><|start|>assistant<|channel|>final<|message|>B";
  EXPECT_EQ(whole(kHarmonyR, kHarmonyT, between).content, "A{}B");
  for (const std::string& t : {other, bad, ok, browse, between}) expect_streams_alike(kHarmonyR, kHarmonyT, t);
}

TEST(ChatOutput, GptOssOutputsOutsideTheFormat) {
  // No header at all (another model, or a constrained answer): all of it is content, tags or not.
  for (const std::string& text : {std::string("Hello there"), std::string("{\"a\": 1}"), std::string("<|chan"),
                                  std::string("  to be or not"), std::string("<|end|> stray")}) {
    const ChatDelta d = whole(kHarmonyR, kHarmonyT, text);
    EXPECT_EQ(d.content, text);
    EXPECT_EQ(d.reasoning, "");
    expect_streams_alike(kHarmonyR, kHarmonyT, text);
  }
  // Cut off by max_tokens inside the next header: what was written so far, and no markup.
  const std::string cut = "<|channel|>analysis<|message|>thinking<|end|><|start|>assistant<|channel|>fin";
  const ChatDelta c = whole(kHarmonyR, kHarmonyT, cut);
  EXPECT_EQ(c.reasoning, "thinking");
  EXPECT_EQ(c.content, "");
  expect_streams_alike(kHarmonyR, kHarmonyT, cut);
  // ... or inside a call: its arguments as far as they go are not a call.
  const ChatDelta half = whole(kHarmonyR, kHarmonyT, "<|channel|>commentary to=functions.get_time<|message|>{\"tz\":");
  EXPECT_TRUE(half.tool_calls.empty());
  EXPECT_EQ(half.content, "{\"tz\":");
}

TEST(ChatOutput, ParserNames) {
  EXPECT_EQ(parse_tool_call_parser("qwen25"), ToolCallParser::kHermes);
  EXPECT_EQ(parse_tool_call_parser("llama3"), ToolCallParser::kLlama3);
  EXPECT_EQ(parse_tool_call_parser("deepseekv3"), ToolCallParser::kDeepSeekV3);
  EXPECT_EQ(parse_tool_call_parser("deepseekv31"), ToolCallParser::kDeepSeekV31);
  EXPECT_EQ(parse_tool_call_parser("mistral"), ToolCallParser::kMistral);
  EXPECT_EQ(parse_tool_call_parser("qwen3_coder"), ToolCallParser::kQwen3Coder);
  EXPECT_EQ(parse_tool_call_parser("gpt-oss"), ToolCallParser::kGptOss);
  EXPECT_THROW(parse_tool_call_parser("pythonic"), Error);
  EXPECT_EQ(parse_reasoning_parser("qwen3"), ReasoningParser::kQwen3);
  EXPECT_EQ(parse_reasoning_parser("gpt-oss"), ReasoningParser::kGptOss);
  EXPECT_THROW(parse_reasoning_parser("o1"), Error);
}

}  // namespace
}  // namespace dpserve
