// The Files and Batch APIs' stores without sockets: the file store's byte bound and owners, the
// batch store's count bound (finished batches go first; running ones are never dropped).
#include <gtest/gtest.h>

#include "server/batch_store.h"
#include "server/file_store.h"

namespace dpserve {
namespace {

TEST(FileStore, BoundedInBytesAndByOwner) {
  FileStore s(100);
  auto a = s.put("file-a", "k", "a.jsonl", "batch", std::string(60, 'x'));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->object()["bytes"], 60);
  EXPECT_EQ(a->object()["id"], "file-a");
  EXPECT_FALSE(s.put("file-b", "k", "b.jsonl", "batch", std::string(41, 'x')));  // 101 > 100: nothing kept
  auto b = s.put("file-c", "other", "b.jsonl", "batch_output", std::string(40, 'x'));
  ASSERT_TRUE(b);
  EXPECT_EQ(s.bytes(), 100u);
  EXPECT_FALSE(s.get(a->id, "other"));
  EXPECT_EQ(*s.get(a->id, "k")->content, std::string(60, 'x'));
  EXPECT_EQ(s.list("k").size(), 1u);
  EXPECT_EQ(s.list("other", "batch").size(), 0u);
  EXPECT_EQ(s.list("other", "batch_output").size(), 1u);
  EXPECT_FALSE(s.erase(a->id, "other"));
  EXPECT_TRUE(s.erase(a->id, "k"));
  EXPECT_EQ(s.bytes(), 40u);
  EXPECT_TRUE(s.put("file-d", "k", "c.jsonl", "batch", std::string(60, 'x')));  // room again
}

TEST(BatchStore, FinishedBatchesGoFirstBeyondTheCount) {
  BatchStore s(2);
  auto object = [](const char* id, const char* status) { return nlohmann::json{{"id", id}, {"status", status}}; };
  s.add("k", object("a", "in_progress"));
  s.add("k", object("b", "completed"));
  s.add("k", object("c", "validating"));  // at the count: the finished b goes, a still runs
  EXPECT_TRUE(s.get("a", "k"));
  EXPECT_FALSE(s.get("b", "k"));
  EXPECT_TRUE(s.get("c", "k"));
  EXPECT_FALSE(s.get("a", "other"));
  s.add("k", object("d", "validating"));  // none finished: kept beyond the count rather than drop a running one
  EXPECT_EQ(s.list("k").size(), 3u);
  EXPECT_EQ(s.list("k").front()->id, "a");  // oldest first
  EXPECT_TRUE(batch_finished("cancelled") && batch_finished("failed") && !batch_finished("cancelling"));
}

}  // namespace
}  // namespace dpserve
