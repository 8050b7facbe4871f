// The Responses API's pieces without sockets: the bounded response store (oldest out first, by
// count and by bytes, per owner; replace for background runs), the background runs (bound, cancel,
// the destructor's join), the event logs of streamed background responses, the output builder
// (items and events in OpenAI's order) and the input_items list (ids, pages, query errors).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "server/background_runs.h"
#include "server/chat_output.h"
#include "server/event_log.h"
#include "server/openai_error.h"
#include "server/response_input_items.h"
#include "server/response_output.h"
#include "server/response_store.h"

namespace dpserve {
namespace {

using json = nlohmann::json;

ResponseStore::Entry entry(const std::string& owner, size_t pad = 0) {
  return {owner, json{{"pad", std::string(pad, 'x')}}, nlohmann::ordered_json::array(), 0};
}

TEST(ResponseStore, EvictsTheOldestBeyondTheCount) {
  ResponseStore s(3, 1 << 20);
  for (const char* id : {"a", "b", "c", "d"}) ASSERT_TRUE(s.put(id, entry("k")));
  EXPECT_EQ(s.size(), 3u);
  EXPECT_FALSE(s.get("a", "k"));
  for (const char* id : {"b", "c", "d"}) EXPECT_TRUE(s.get(id, "k")) << id;
}

TEST(ResponseStore, EvictsTheOldestBeyondTheBytes) {
  ResponseStore s(100, 3000);
  ASSERT_TRUE(s.put("a", entry("k", 1000)));
  ASSERT_TRUE(s.put("b", entry("k", 1000)));
  ASSERT_TRUE(s.put("c", entry("k", 1000)));  // a goes: three would exceed 3000 bytes with the JSON around them
  EXPECT_FALSE(s.get("a", "k"));
  EXPECT_TRUE(s.get("b", "k"));
  EXPECT_LE(s.bytes(), 3000u);
  EXPECT_FALSE(s.put("huge", entry("k", 5000)));  // alone beyond the bound: not kept, nothing evicted
  EXPECT_TRUE(s.get("b", "k"));
}

// Stored chat completions are listed in the order they were made: an update keeps an id's place,
// eviction and erase take it out, and each owner sees only their own.
TEST(ResponseStore, IdsInTheOrderFirstKept) {
  ResponseStore s(3, 1 << 20);
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(s.put(id, entry("k")));
  ASSERT_EQ(s.update("a", "k", [](ResponseStore::Entry& e) { e.response["pad"] = "changed"; }),
            ResponseStore::Update::kDone);
  ASSERT_TRUE(s.replace("b", entry("k", 3)));
  EXPECT_EQ(s.ids("k"), (std::vector<std::string>{"a", "b", "c"}));
  // Beyond the count: "k"'s least recently written entry ("c") goes.
  ASSERT_TRUE(s.put("d", entry("other")));
  EXPECT_EQ(s.ids("k"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s.ids("other"), (std::vector<std::string>{"d"}));
  ASSERT_TRUE(s.erase("a", "k"));
  EXPECT_EQ(s.ids("k"), (std::vector<std::string>{"b"}));
  EXPECT_TRUE(s.ids("nobody").empty());
}

TEST(ResponseStore, ReplaceOnlyOverAKeptEntryOfTheSameOwner) {
  ResponseStore s(10, 1 << 20);
  EXPECT_FALSE(s.replace("a", entry("k", 1)));  // nothing kept under "a": nothing added
  EXPECT_FALSE(s.get("a", "k"));
  ASSERT_TRUE(s.put("a", entry("k", 1)));
  EXPECT_FALSE(s.replace("a", entry("other", 2)));  // another owner's entry is not theirs to replace
  EXPECT_EQ(s.get("a", "k")->response["pad"], "x");
  EXPECT_TRUE(s.replace("a", entry("k", 2)));
  EXPECT_EQ(s.get("a", "k")->response["pad"], "xx");
  EXPECT_EQ(s.size(), 1u);
  ASSERT_TRUE(s.erase("a", "k"));
  EXPECT_FALSE(s.replace("a", entry("k", 3)));  // deleted while a run went on: it stays deleted
  EXPECT_EQ(s.size(), 0u);
}

// A work that runs until it is cancelled (or 20 s pass, so a broken cancel fails instead of hanging).
std::function<void(const std::function<bool()>&)> until_cancelled(std::atomic<int>& saw_cancel) {
  return [&saw_cancel](const std::function<bool()>& cancelled) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!cancelled() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (cancelled()) saw_cancel.fetch_add(1);
  };
}

TEST(BackgroundRuns, BoundedCancelledByIdAndJoinedAtTheEnd) {
  std::atomic<int> saw_cancel{0};
  {
    BackgroundRuns runs(2);
    ASSERT_TRUE(runs.start("a", until_cancelled(saw_cancel)));
    EXPECT_FALSE(runs.start("a", until_cancelled(saw_cancel)));  // one run per id
    ASSERT_TRUE(runs.start("b", until_cancelled(saw_cancel)));
    EXPECT_FALSE(runs.start("c", until_cancelled(saw_cancel)));  // two run: the bound
    EXPECT_EQ(runs.size(), 2u);
    EXPECT_FALSE(runs.wait("a", std::chrono::milliseconds(50)));  // still running
    EXPECT_FALSE(runs.cancel("c"));
    EXPECT_TRUE(runs.cancel("a"));
    EXPECT_TRUE(runs.wait("a", std::chrono::seconds(10)));
    EXPECT_FALSE(runs.running("a"));
    EXPECT_EQ(saw_cancel.load(), 1);
    EXPECT_TRUE(runs.running("b"));
    ASSERT_TRUE(runs.start("c", until_cancelled(saw_cancel)));  // room again
  }
  // The destructor cancelled b and c and waited for them.
  EXPECT_EQ(saw_cancel.load(), 3);
}

TEST(BackgroundRuns, AWorkThatEndsByItselfFreesItsPlace) {
  BackgroundRuns runs(1);
  std::atomic<bool> ran{false};
  ASSERT_TRUE(runs.start("a", [&ran](const std::function<bool()>&) { ran = true; }));
  EXPECT_TRUE(runs.wait("a", std::chrono::seconds(10)));
  EXPECT_TRUE(ran.load());
  EXPECT_FALSE(runs.cancel("a"));
  EXPECT_TRUE(runs.start("b", [](const std::function<bool()>&) {}));
  BackgroundRuns none(0);
  EXPECT_FALSE(none.start("a", [](const std::function<bool()>&) {}));
}

TEST(EventLog, ReadersFollowFromAnyPointWhileItGrows) {
  EventLog log;
  bool done = true;
  EXPECT_TRUE(log.read(0, std::chrono::milliseconds(1), done).empty());
  EXPECT_FALSE(done);
  log.append("a");
  log.append("b");
  EXPECT_EQ(log.read(0, std::chrono::milliseconds(1), done), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(log.read(1, std::chrono::milliseconds(1), done), (std::vector<std::string>{"b"}));
  EXPECT_TRUE(log.read(2, std::chrono::milliseconds(1), done).empty());
  // A reader waiting at the end wakes for the next event, well before its timeout.
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    log.append("c");
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(log.read(2, std::chrono::seconds(20), done), (std::vector<std::string>{"c"}));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  writer.join();
  EXPECT_FALSE(done);
  log.finish();
  EXPECT_TRUE(log.read(3, std::chrono::seconds(20), done).empty());
  EXPECT_TRUE(done);
  EXPECT_EQ(log.size(), 3u);
}

TEST(EventLogs, KeepTheRunningAndTheLastFinished) {
  EventLogs logs(2);
  for (const char* id : {"a", "b", "c", "d"}) logs.open(id);
  logs.finished("a");
  logs.finished("b");
  EXPECT_TRUE(logs.find("a") && logs.find("b"));
  logs.finished("c");  // a third finished: the first to finish goes
  EXPECT_FALSE(logs.find("a"));
  EXPECT_TRUE(logs.find("b") && logs.find("c") && logs.find("d"));  // d still runs
  logs.erase("b");
  logs.finished("b");  // its run ends after the response was deleted: nothing comes back
  EXPECT_FALSE(logs.find("b"));
  logs.finished("d");
  EXPECT_TRUE(logs.find("c") && logs.find("d"));
  EventLogs none(0);
  none.open("x");
  EXPECT_TRUE(none.find("x"));  // kept while it runs
  none.finished("x");
  EXPECT_FALSE(none.find("x"));
}

TEST(ResponseStore, OwnersSeeOnlyTheirOwn) {
  ResponseStore s(10, 1 << 20);
  ASSERT_TRUE(s.put("a", entry("key-a")));
  EXPECT_FALSE(s.get("a", "key-b"));
  EXPECT_FALSE(s.erase("a", "key-b"));
  EXPECT_TRUE(s.erase("a", "key-a"));
  EXPECT_FALSE(s.get("a", "key-a"));
  ResponseStore none(0, 1 << 20);
  EXPECT_FALSE(none.put("a", entry("k")));
}

// Conversations grow by update: changes made at once from many threads all land (a get then put
// would lose some), another key's or a missing entry is kMissing, and a change past the byte bound
// leaves the entry as it was.
TEST(ResponseStore, UpdatesAllLandAndStayWithinTheBound) {
  ResponseStore s(10, 4096);
  ASSERT_TRUE(s.put("c", entry("key-a")));
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&s, t] {
      for (int i = 0; i < 10; ++i)
        EXPECT_EQ(s.update("c", "key-a", [&](ResponseStore::Entry& e) { e.conversation.push_back(t * 10 + i); }),
                  ResponseStore::Update::kDone);
    });
  for (auto& th : threads) th.join();
  auto e = s.get("c", "key-a");
  ASSERT_TRUE(e);
  ASSERT_EQ(e->conversation.size(), 80u);
  std::vector<int> seen;
  for (const auto& v : e->conversation) seen.push_back(v.get<int>());
  std::sort(seen.begin(), seen.end());
  for (int i = 0; i < 80; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_EQ(s.update("c", "key-b", [](ResponseStore::Entry&) {}), ResponseStore::Update::kMissing);
  EXPECT_EQ(s.update("nope", "key-a", [](ResponseStore::Entry&) {}), ResponseStore::Update::kMissing);
  EXPECT_EQ(s.update("c", "key-a", [](ResponseStore::Entry& e) { e.conversation.push_back(std::string(5000, 'x')); }),
            ResponseStore::Update::kTooBig);
  EXPECT_EQ(s.get("c", "key-a")->conversation.size(), 80u);
}

// One key filling the store evicts its own oldest, not another key's: the owner holding the most
// loses first, by count when the count binds and by bytes when the bytes do.
TEST(ResponseStore, AKeyThatFillsTheStoreEvictsItsOwn) {
  ResponseStore s(3, 1 << 20);
  ASSERT_TRUE(s.put("a1", entry("key-a")));
  for (const char* id : {"b1", "b2", "b3", "b4"}) ASSERT_TRUE(s.put(id, entry("key-b")));
  EXPECT_TRUE(s.get("a1", "key-a"));
  EXPECT_FALSE(s.get("b1", "key-b"));
  EXPECT_FALSE(s.get("b2", "key-b"));
  EXPECT_TRUE(s.get("b4", "key-b"));
  EXPECT_EQ(s.size(), 3u);
  // When key-a holds more, its oldest goes.
  ResponseStore t(4, 1 << 20);
  for (const char* id : {"a1", "a2", "a3"}) ASSERT_TRUE(t.put(id, entry("key-a")));
  ASSERT_TRUE(t.put("b1", entry("key-b")));
  ASSERT_TRUE(t.put("b2", entry("key-b")));
  EXPECT_FALSE(t.get("a1", "key-a"));
  EXPECT_TRUE(t.get("b1", "key-b"));

  ResponseStore u(100, 5000);
  ASSERT_TRUE(u.put("small", entry("key-a", 500)));
  for (const char* id : {"big1", "big2", "big3", "big4"}) ASSERT_TRUE(u.put(id, entry("key-b", 1500)));
  EXPECT_TRUE(u.get("small", "key-a"));
  EXPECT_FALSE(u.get("big1", "key-b"));
  EXPECT_TRUE(u.get("big4", "key-b"));
  EXPECT_LE(u.bytes(), 5000u);
}

// The byte bound is the text kept: an entry made of many small JSON values (a tree of nodes tens of
// times its text when parsed) is charged and held as its text, and reads back the same.
TEST(ResponseStore, KeepsEntriesAsTheirText) {
  ResponseStore s(10, 1 << 20);
  json many = json::array();
  for (int i = 0; i < 1000; ++i) many.push_back(json::object());
  ResponseStore::Entry e{"k", json{{"m", many}}, nlohmann::ordered_json::array({{{"z", 1}, {"a", 2}}}), 1};
  ASSERT_TRUE(s.put("r", e));
  EXPECT_EQ(s.bytes(), std::string("r").size() + 1 + e.response.dump().size() + e.conversation.dump().size());
  auto back = s.get("r", "k");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->response, e.response);
  EXPECT_EQ(back->conversation.dump(), R"([{"z":1,"a":2}])");  // the written key order survives
  EXPECT_EQ(back->input_count, 1u);
}

TEST(ResponseOutput, ItemsInWritingOrderWithTheirEvents) {
  int n = 0;
  ResponseOutput out([&](const char* p) { return std::string(p) + "_" + std::to_string(n++); });
  std::vector<std::string> types;
  auto take = [&](const std::vector<json>& ev) {
    for (const auto& e : ev) types.push_back(e["type"]);
  };
  take(out.feed(ChatDelta{.reasoning = "hm", .content = "", .tool_calls = {}}));
  take(out.feed(ChatDelta{.reasoning = "", .content = "Hi", .tool_calls = {}}));
  take(out.feed(ChatDelta{.reasoning = "", .content = "!", .tool_calls = {{"call_1", "f", "{}"}}}));
  take(out.finish(false));
  const std::vector<std::string> want = {
      "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
      "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta",
      "response.output_text.delta", "response.output_text.done", "response.content_part.done",
      "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done"};
  EXPECT_EQ(types, want);
  const json& items = out.items();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0]["type"], "reasoning");
  EXPECT_EQ(items[0]["content"][0]["text"], "hm");
  EXPECT_EQ(items[1]["content"][0]["text"], "Hi!");
  EXPECT_EQ(items[2]["call_id"], "call_1");
  EXPECT_EQ(out.output_text(), "Hi!");
}

TEST(ResponseOutput, EmptyOutputIsAnEmptyMessageAndCutShortIsIncomplete) {
  ResponseOutput out([](const char* p) { return std::string(p) + "_x"; });
  out.finish(true);
  ASSERT_EQ(out.items().size(), 1u);
  EXPECT_EQ(out.items()[0]["type"], "message");
  EXPECT_EQ(out.items()[0]["status"], "incomplete");
  EXPECT_EQ(out.output_text(), "");
}

TEST(ResponseOutput, WhitespaceOnlyOutputIsMessageText) {
  // What /v1/responses does with a parser: each delivery fed, finish() at the end. An output that is only
  // whitespace, with no <think> or <tool_call> around it, is the message's text, whole and streamed.
  const std::string text = "\n\n\n";
  for (const bool streamed : {false, true}) {
    ChatOutputParser parser(ReasoningParser::kQwen3, ToolCallParser::kHermes, {"get_time"}, false, 1);
    ResponseOutput out([](const char* p) { return std::string(p) + "_x"; });
    std::string deltas, done;
    auto take = [&](const std::vector<json>& ev) {
      for (const auto& e : ev) {
        if (e["type"] == "response.output_text.delta") deltas += e["delta"].get<std::string>();
        if (e["type"] == "response.output_text.done") done = e["text"];
      }
    };
    if (streamed)
      for (const char c : text) take(out.feed(parser.feed(std::string(1, c))));
    else
      take(out.feed(parser.feed(text)));
    take(out.feed(parser.finish()));
    take(out.finish(false));
    ASSERT_EQ(out.items().size(), 1u);
    EXPECT_EQ(out.items()[0]["type"], "message");
    EXPECT_EQ(out.output_text(), text) << streamed;
    EXPECT_EQ(deltas, text) << streamed;
    EXPECT_EQ(done, text) << streamed;
  }
}

// include message.output_text.logprobs: the entries of the tokens that wrote the message text reach
// it (its part, its done event, its deltas), and no others: not the reasoning, not the tags, not the
// blank line a parser drops after </think>, not the tool call's tokens, not a final EOS; however the
// tokens were grouped into deliveries (one each, all at once, or split between the tags).
TEST(ResponseOutput, LogprobsGoToTheMessageTokensOnly) {
  const std::vector<std::string> tokens = {
      "<think>",      "hm",        "</think>",    "\n\n",
      "Hi",           " there",    "<tool_call>", R"({"name": "f", "arguments": {}})",
      "</tool_call>", "<|im_end|>"};
  auto entry = [](const std::string& t) {
    json bytes = json::array();
    for (unsigned char c : t) bytes.push_back(int(c));
    return json{{"token", t}, {"logprob", -0.5}, {"bytes", bytes}, {"top_logprobs", json::array()}};
  };
  const json want = json::array({entry("Hi"), entry(" there")});
  const std::vector<std::vector<size_t>> groupings = {
      {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {10}, {5, 5}, {2, 3, 2, 3}, {4, 6}, {3, 1, 1, 5}};
  for (const auto& sizes : groupings) {
    ChatOutputParser parser(ReasoningParser::kQwen3, ToolCallParser::kHermes, {"f"}, false, 1);
    ResponseOutput out([](const char* p) { return std::string(p) + "_x"; });
    out.set_markup({"<think>", "</think>", "<tool_call>", "</tool_call>"});
    json streamed = json::array(), done;
    auto take = [&](const std::vector<json>& ev) {
      for (const auto& e : ev) {
        if (e["type"] == "response.output_text.delta")
          for (const auto& x : e["logprobs"]) streamed.push_back(x);
        if (e["type"] == "response.output_text.done") done = e["logprobs"];
      }
    };
    size_t at = 0;
    for (size_t n : sizes) {
      std::string text;
      json entries = json::array();
      for (size_t i = at; i < at + n; ++i) {
        // The EOS token writes no text (skipped as special), as the detokenizer does.
        if (tokens[i] != "<|im_end|>") text += tokens[i];
        entries.push_back(entry(tokens[i]));
      }
      at += n;
      take(out.feed(parser.feed(text), entries));
    }
    take(out.feed(parser.finish()));
    take(out.finish(false));
    const std::string label = ::testing::PrintToString(sizes);
    ASSERT_EQ(out.items().size(), 3u) << label;
    EXPECT_EQ(out.items()[1]["content"][0]["text"], "Hi there") << label;
    EXPECT_EQ(out.items()[1]["content"][0]["logprobs"], want) << label;
    EXPECT_EQ(streamed, want) << label;
    EXPECT_EQ(done, want) << label;
    EXPECT_EQ(out.items()[0]["type"], "reasoning") << label;
    EXPECT_EQ(out.items()[2]["type"], "function_call") << label;
  }
}

// Five stored items of the four kinds, the ids given as the server gives them.
nlohmann::ordered_json five_items() {
  auto items = nlohmann::ordered_json::parse(R"([
    {"type": "message", "role": "user", "content": "a"},
    {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}", "id": "fc_given"},
    {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "hmm"}]},
    {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "data:x"}]}])");
  int n = 0;
  give_item_ids(items, [&](const char* p) { return std::string(p) + "_" + std::to_string(n++); });
  return items;
}

std::vector<std::string> ids_of(const nlohmann::ordered_json& list) {
  std::vector<std::string> v;
  for (const auto& it : list["data"]) v.push_back(it["id"]);
  return v;
}

TEST(InputItems, IdsOfTheirKindOnlyWhereMissing) {
  auto items = five_items();
  EXPECT_EQ(items[0]["id"], "msg_0");
  EXPECT_EQ(items[1]["id"], "fc_given");
  EXPECT_EQ(items[2]["id"], "fco_1");
  EXPECT_EQ(items[3]["id"], "rs_2");
  EXPECT_EQ(items[4]["id"], "msg_3");
}

TEST(InputItems, ShapesAsOpenAIListsThem) {
  InputItemsQuery q;
  q.ascending = true;
  auto l = list_input_items(five_items(), q);
  EXPECT_EQ(l["object"], "list");
  EXPECT_EQ(l["data"][0]["content"], nlohmann::ordered_json::parse(R"([{"type": "input_text", "text": "a"}])"));
  EXPECT_EQ(l["data"][1]["arguments"], "{}");
  EXPECT_EQ(l["data"][2]["output"], "42");
  EXPECT_EQ(l["data"][3]["content"][0]["text"], "hmm");
  for (const auto& it : l["data"]) EXPECT_EQ(it["status"], "completed");
  // Image URLs only when include asks for them.
  EXPECT_TRUE(l["data"][4]["content"][0]["image_url"].is_null());
  q.image_urls = true;
  EXPECT_EQ(list_input_items(five_items(), q)["data"][4]["content"][0]["image_url"], "data:x");
}

TEST(InputItems, PagesInEitherOrder) {
  const auto items = five_items();
  InputItemsQuery q;  // desc, 20
  auto l = list_input_items(items, q);
  EXPECT_EQ(ids_of(l), (std::vector<std::string>{"msg_3", "rs_2", "fco_1", "fc_given", "msg_0"}));
  EXPECT_EQ(l["first_id"], "msg_3");
  EXPECT_EQ(l["last_id"], "msg_0");
  EXPECT_FALSE(l["has_more"]);
  q.limit = 2;
  l = list_input_items(items, q);
  EXPECT_EQ(ids_of(l), (std::vector<std::string>{"msg_3", "rs_2"}));
  EXPECT_TRUE(l["has_more"]);
  q.after = "rs_2";
  l = list_input_items(items, q);
  EXPECT_EQ(ids_of(l), (std::vector<std::string>{"fco_1", "fc_given"}));
  EXPECT_TRUE(l["has_more"]);
  q.after = "fc_given";
  l = list_input_items(items, q);
  EXPECT_EQ(ids_of(l), (std::vector<std::string>{"msg_0"}));
  EXPECT_FALSE(l["has_more"]);
  q.after = "msg_0";  // past the end: an empty page
  l = list_input_items(items, q);
  EXPECT_TRUE(l["data"].empty());
  EXPECT_TRUE(l["first_id"].is_null());
  EXPECT_FALSE(l["has_more"]);
  // asc with before: the items just before it, has_more when earlier ones remain.
  q = InputItemsQuery{};
  q.ascending = true;
  q.limit = 2;
  q.before = "msg_3";
  l = list_input_items(items, q);
  EXPECT_EQ(ids_of(l), (std::vector<std::string>{"fco_1", "rs_2"}));
  EXPECT_TRUE(l["has_more"]);
  q.after = "fc_given";  // both: the items between them
  l = list_input_items(items, q);
  EXPECT_EQ(ids_of(l), (std::vector<std::string>{"fco_1", "rs_2"}));
  EXPECT_FALSE(l["has_more"]);
  q.after = "rs_2";
  q.before = "fco_1";  // after lies past before: nothing
  EXPECT_TRUE(list_input_items(items, q)["data"].empty());
  q.after = "nope";
  try {
    list_input_items(items, q);
    ADD_FAILURE() << "unknown after accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "after");
  }
}

TEST(InputItems, QueryErrorsNameTheParameter) {
  using P = std::multimap<std::string, std::string>;
  auto q = parse_input_items_query(P{{"limit", "100"}, {"order", "asc"}, {"include[]", "message.input_image.image_url"}});
  EXPECT_EQ(q.limit, 100);
  EXPECT_TRUE(q.ascending);
  EXPECT_TRUE(q.image_urls);
  EXPECT_EQ(parse_input_items_query(P{}).limit, 20);
  EXPECT_FALSE(parse_input_items_query(P{}).ascending);
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"limit", "0"}, {"limit", "101"}, {"limit", "-1"}, {"limit", "1x"}, {"limit", ""}, {"order", "ASC"},
           {"after", ""}, {"include", "reasoning.encrypted_content"}, {"include[]", "bogus"}, {"foo", "1"}}) {
    try {
      parse_input_items_query(P{{k, v}});
      ADD_FAILURE() << k << "=" << v << " accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400) << k;
      EXPECT_EQ(e.param(), k == "include[]" ? "include" : k) << k << "=" << v;
    }
  }
}

}  // namespace
}  // namespace dpserve
