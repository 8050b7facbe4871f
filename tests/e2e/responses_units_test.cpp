// The Responses API's pieces without sockets: the bounded response store (oldest out first, by
// count and by bytes, per owner) and the output builder (items and events in OpenAI's order).
#include <gtest/gtest.h>

#include "server/response_output.h"
#include "server/response_store.h"

namespace dpserve {
namespace {

using json = nlohmann::json;

ResponseStore::Entry entry(const std::string& owner, size_t pad = 0) {
  return {owner, json{{"pad", std::string(pad, 'x')}}, nlohmann::ordered_json::array()};
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

}  // namespace
}  // namespace dpserve
