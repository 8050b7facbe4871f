// The Files, Uploads and Batch APIs' stores without sockets: the file store's byte bound and owners,
// uploads held in that bound, MD5 against RFC 1321's test suite, the batch store's count bound
// (finished batches go first; running ones are never dropped).
#include <gtest/gtest.h>

#include <memory>

#include "server/batch_store.h"
#include "server/file_store.h"
#include "server/md5.h"
#include "server/openai_error.h"
#include "server/upload_store.h"

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

// RFC 1321 appendix A.5's test suite, and the often-quoted million 'a's; pieces fed one at a time
// (across the 64-byte blocks and the padding's edge at 56) give the digest of the whole.
TEST(Md5, Rfc1321TestSuite) {
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("a"), "0cc175b9c0f1b6a831c399e269772661");
  EXPECT_EQ(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(md5_hex("message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
  EXPECT_EQ(md5_hex("abcdefghijklmnopqrstuvwxyz"), "c3fcd3d76192e4007dfb496cca67e13b");
  EXPECT_EQ(md5_hex("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
            "d174ab98d277d9f5a5611c2c9f419d9f");
  EXPECT_EQ(md5_hex("12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
            "57edf4a22be3c955ac49da2e2107b67a");
  EXPECT_EQ(md5_hex(std::string(1000000, 'a')), "7707d6ae4e027c70eea2a935c2296f21");
  std::string text;
  for (int i = 0; i < 300; ++i) text += char('A' + (i * 7) % 26);
  for (size_t len : {55, 56, 63, 64, 65, 119, 120, 128, 300})
    for (size_t piece : {1, 3, 64, 100}) {
      Md5 m;
      for (size_t at = 0; at < len; at += piece) m.update(std::string_view(text).substr(at, std::min(piece, len - at)));
      EXPECT_EQ(m.hex(), md5_hex(std::string_view(text).substr(0, len))) << len << " in pieces of " << piece;
    }
}

int api_status(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e.status();
  }
  return 0;
}

// An upload holds its declared bytes in the file store's bound from its creation (more when its
// parts outgrow them), and gives them back when it is cancelled, expires, or becomes the file.
TEST(UploadStore, HoldsItsBytesInTheFileStoresBound) {
  int64_t now = 1000;
  FileStore files(100, [&] { return now; });
  UploadStore uploads(files, [&] { return now; });
  const auto a = uploads.create("upload_a", "k", "a.jsonl", "batch", 60, 0);
  EXPECT_EQ(a.object()["status"], "pending");
  EXPECT_EQ(a.object()["expires_at"], 1000 + 3600);
  EXPECT_TRUE(a.object()["file"].is_null());
  EXPECT_EQ(files.bytes(), 60u);
  EXPECT_FALSE(files.put("file-x", "k", "x", "batch", std::string(41, 'x')));  // 60 held + 41 > 100
  EXPECT_EQ(api_status([&] { uploads.create("upload_b", "k", "b.jsonl", "batch", 41, 0); }), 400);
  uploads.add_part("upload_a", "k", "part_1", std::string(30, '1'));
  uploads.add_part("upload_a", "k", "part_2", std::string(30, '2'));
  uploads.add_part("upload_a", "k", "part_3", std::string(20, '3'));  // past the declared 60: holds 80
  EXPECT_EQ(files.bytes(), 80u);
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_a", "k", "part_4", std::string(21, '4')); }), 400);  // 101
  // Other keys see nothing; a wrong total, a part listed twice or an unknown part are 400s that change
  // nothing.
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_a", "other", "part_5", "x"); }), 404);
  EXPECT_EQ(api_status([&] { uploads.complete("upload_a", "other", {"part_1", "part_2"}, {}, "file-a"); }), 404);
  EXPECT_EQ(api_status([&] { uploads.complete("upload_a", "k", {"part_1", "part_3"}, {}, "file-a"); }), 400);
  EXPECT_EQ(api_status([&] { uploads.complete("upload_a", "k", {"part_1", "part_1"}, {}, "file-a"); }), 400);
  EXPECT_EQ(api_status([&] { uploads.complete("upload_a", "k", {"part_1", "part_9"}, {}, "file-a"); }), 400);
  const std::string whole = std::string(30, '2') + std::string(30, '1');
  EXPECT_EQ(api_status([&] {
              uploads.complete("upload_a", "k", {"part_2", "part_1"}, md5_hex("nope"), "file-a");
            }),
            400);
  EXPECT_EQ(uploads.pending(), 1u);  // a wrong md5 leaves it pending
  const auto done = uploads.complete("upload_a", "k", {"part_2", "part_1"}, md5_hex(whole), "file-a");
  EXPECT_EQ(done.object()["status"], "completed");
  EXPECT_EQ(done.object()["file"]["id"], "file-a");
  EXPECT_EQ(done.object()["file"]["bytes"], 60);
  EXPECT_EQ(*files.get("file-a", "k")->content, whole);  // in part_ids' order; part_3 dropped
  EXPECT_EQ(files.bytes(), 60u);
  EXPECT_EQ(uploads.pending(), 0u);
  EXPECT_EQ(api_status([&] { uploads.cancel("upload_a", "k"); }), 400);  // already completed
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_a", "k", "part_6", "x"); }), 400);

  uploads.create("upload_c", "k", "c.jsonl", "batch", 30, 0);
  uploads.add_part("upload_c", "k", "part_7", std::string(10, 'c'));
  EXPECT_EQ(files.bytes(), 90u);
  EXPECT_EQ(uploads.cancel("upload_c", "k").object()["status"], "cancelled");
  EXPECT_EQ(files.bytes(), 60u);
  EXPECT_EQ(api_status([&] { uploads.complete("upload_c", "k", {"part_7"}, {}, "file-c"); }), 400);

  uploads.create("upload_d", "k", "d.jsonl", "batch", 40, 0);
  EXPECT_EQ(files.bytes(), 100u);
  now = 1000 + 3600;  // an hour on: upload_d expires and frees its 40 bytes
  EXPECT_EQ(uploads.pending(), 0u);
  EXPECT_EQ(files.bytes(), 60u);
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_d", "k", "part_8", "x"); }), 400);
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_none", "k", "part_8", "x"); }), 404);
}

// What parts cost beside their bytes is bounded: a thousand parts an upload, ten thousand in all
// pending; a cancelled upload's parts no longer count.
TEST(UploadStore, PartsAreBoundedPerUploadAndInAll) {
  FileStore files(1 << 20);
  UploadStore uploads(files);
  for (int u = 0; u < 10; ++u) {
    const std::string id = "upload_" + std::to_string(u);
    uploads.create(id, "k", "x.jsonl", "batch", 1000, 0);
    for (int i = 0; i < 1000; ++i) uploads.add_part(id, "k", id + "_part_" + std::to_string(i), "x");
  }
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_0", "k", "part_more", "x"); }), 400);  // 1001 in one
  uploads.create("upload_10", "k", "x.jsonl", "batch", 10, 0);
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_10", "k", "part_a", "x"); }), 400);  // 10001 in all
  uploads.cancel("upload_3", "k");                                                         // its 1000 parts go
  uploads.create("upload_11", "k", "x.jsonl", "batch", 10, 0);
  for (int i = 0; i < 500; ++i) {
    uploads.add_part("upload_10", "k", "part_b" + std::to_string(i), "x");
    uploads.add_part("upload_11", "k", "part_d" + std::to_string(i), "x");
  }
  EXPECT_EQ(api_status([&] { uploads.add_part("upload_10", "k", "part_c", "x"); }), 400);  // 10000 again
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back("upload_1_part_" + std::to_string(i));
  EXPECT_EQ(uploads.complete("upload_1", "k", ids, {}, "file-1").object()["file"]["bytes"], 1000);
  uploads.add_part("upload_10", "k", "part_c", "x");  // the completed upload's parts went too
}

// An ended upload is remembered for its status, not with its file: deleting the file frees its bytes.
TEST(UploadStore, AnEndedUploadDoesNotHoldItsFile) {
  FileStore files(100);
  UploadStore uploads(files);
  uploads.create("upload_a", "k", "a.jsonl", "batch", 3, 0);
  uploads.add_part("upload_a", "k", "part_1", "abc");
  std::weak_ptr<const std::string> bytes;
  {
    const auto done = uploads.complete("upload_a", "k", {"part_1"}, {}, "file-a");
    bytes = done.file->content;
  }
  ASSERT_FALSE(bytes.expired());  // the file store has it
  ASSERT_TRUE(files.erase("file-a", "k"));
  EXPECT_TRUE(bytes.expired());
  EXPECT_EQ(api_status([&] { uploads.cancel("upload_a", "k"); }), 400);  // still known as completed
}

// The file made on completion takes the upload's expires_after; an empty upload is an empty file.
TEST(UploadStore, TheFileExpiresAsAskedAndMayBeEmpty) {
  int64_t now = 50;
  FileStore files(10, [&] { return now; });
  UploadStore uploads(files, [&] { return now; });
  uploads.create("upload_e", "k", "e.jsonl", "batch", 0, 7200);
  const auto done = uploads.complete("upload_e", "k", {}, md5_hex(""), "file-e");
  EXPECT_EQ(done.object()["file"]["bytes"], 0);
  EXPECT_EQ(done.object()["file"]["expires_at"], 50 + 7200);
  now = 50 + 7200;
  EXPECT_FALSE(files.get("file-e", "k"));
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
