// The Files and Batch APIs' stores without sockets: the file store's byte bound and owners, the
// batch store's count bound (finished batches go first; running ones are never dropped).
#include <gtest/gtest.h>

#include "server/batch_store.h"
#include "server/file_store.h"

namespace dpserve {
namespace {

// OpenAI's expires_after: a file is there until its time, then gone (get, list, content) and its
// bytes free for others; files without one stay. The store's clock is the test's.
TEST(FileStore, ExpiredFilesAreGoneAndFreeTheirBytes) {
  int64_t now = 1000;
  FileStore s(100, [&] { return now; });
  auto a = s.put("file-a", "k", "a.jsonl", "batch", std::string(40, 'x'), 3600);
  auto b = s.put("file-b", "k", "b.jsonl", "batch", std::string(30, 'x'), 7200);
  auto c = s.put("file-c", "k", "c.jsonl", "batch", std::string(30, 'x'));
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->object()["expires_at"], 4600);
  EXPECT_TRUE(c->object()["expires_at"].is_null());
  EXPECT_FALSE(s.put("file-d", "k", "d.jsonl", "batch", std::string(10, 'x')));  // 110 > 100
  now = 4599;
  EXPECT_TRUE(s.get("file-a", "k"));
  now = 4600;  // a's time
  EXPECT_FALSE(s.get("file-a", "k"));
  EXPECT_EQ(s.bytes(), 60u);
  EXPECT_EQ(s.list("k").size(), 2u);
  EXPECT_TRUE(s.put("file-d", "k", "d.jsonl", "batch", std::string(40, 'x')));  // a's bytes are free
  now = 8200;  // b's too
  EXPECT_FALSE(s.get("file-b", "k"));
  EXPECT_EQ(s.bytes(), 70u);
  std::vector<std::string> ids;
  for (const auto& f : s.list("k")) ids.push_back(f.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"file-c", "file-d"}));
  EXPECT_FALSE(s.erase("file-b", "k"));
}

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
