// The on-disk prefix cache file (kv/prefix_store.h) against the real KV pool and radix tree: a tree
// written from one pool and read into another (at other page ids) holds the same rows, for every
// KV element type and both layouts; LRU order survives; a truncated, corrupt or foreign file is
// refused and takes no page; the file is readable by its owner alone; a file size limit fails the
// write, it does not kill the process.
#include "kv/prefix_store.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>

#include "core/check.h"
#include "kv/prefix_dir.h"

namespace dpserve {
namespace {

// Distinct rows that every element type holds exactly (integer codes, one of them 127, times a
// power of two), so a page read back from the wrong bytes cannot compare equal.
std::vector<float> row_values(int64_t r, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  const float c = std::ldexp(1.0f, -int(r % 5));
  for (int64_t d = 0; d < n; ++d) v[size_t(d)] = c * float(d == r % n ? 127 : (r * 7 + d * 13) % 200 - 100);
  return v;
}

KVPoolConfig pool_config(bool latent, KVElem e) {
  KVPoolConfig c = latent ? KVPoolConfig::latent(2, 6, 2, 4, 16) : KVPoolConfig{2, 2, 8, 4, 16};
  c.elem = e;
  return c;
}

int64_t row_width(const KVPoolConfig& c) { return c.kind == KVKind::kLatent ? c.latent_dim + c.rope_dim : c.head_dim; }

// Every row of page p, as fp32, in a fixed order.
std::vector<std::vector<float>> page_rows(const KVPool& pool, int32_t p) {
  const KVPoolConfig& c = pool.config();
  std::vector<std::vector<float>> out;
  std::vector<float> row(size_t(row_width(c)));
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int64_t s = 0; s < c.page_size; ++s) {
      if (c.kind == KVKind::kLatent) {
        pool.read_latent(l, p, s, row.data());
        out.push_back(row);
        continue;
      }
      for (int64_t h = 0; h < c.n_kv_heads; ++h) {
        pool.read_k(l, p, h, s, row.data());
        out.push_back(row);
        pool.read_v(l, p, h, s, row.data());
        out.push_back(row);
      }
    }
  return out;
}

void fill_page(KVPool& pool, int32_t p, int64_t seed) {
  const KVPoolConfig& c = pool.config();
  int64_t r = seed * 1000;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int64_t s = 0; s < c.page_size; ++s) {
      if (c.kind == KVKind::kLatent) {
        pool.write_latent(l, p, s, row_values(r++, row_width(c)).data());
        continue;
      }
      for (int64_t h = 0; h < c.n_kv_heads; ++h) {
        pool.write_k(l, p, h, s, row_values(r++, row_width(c)).data());
        pool.write_v(l, p, h, s, row_values(r++, row_width(c)).data());
      }
    }
}

// A sequence of n_pages pages of tokens, its KV written, inserted into the tree.
void cache_sequence(KVPool& pool, RadixCache& cache, const std::vector<int32_t>& toks) {
  PageTable t;
  ASSERT_TRUE(t.reserve(pool, int64_t(toks.size())));
  for (int32_t p : t.pages) fill_page(pool, p, p + 1);
  cache.insert(toks, t.pages, int64_t(toks.size()) / pool.page_size());
  t.release(pool);
}

std::vector<int32_t> tokens(std::initializer_list<int32_t> firsts) {
  std::vector<int32_t> t;
  for (int32_t f : firsts)
    for (int i = 0; i < 4; ++i) t.push_back(f + i);
  return t;
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/prefix-store-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

const PrefixIdentity kId = {{"model digest", "1"}, {"--kv-cache-dtype (as resolved)", "fp32"}};

class PrefixStore : public ::testing::TestWithParam<std::tuple<bool, KVElem>> {};

TEST_P(PrefixStore, ATreeReadIntoAnotherPoolHoldsTheSameRows) {
  const auto [latent, elem] = GetParam();
  TempDir dir;
  const std::string file = dir.path + "/rank0.kvcache";
  KVPool a(pool_config(latent, elem));
  RadixCache ca(a);
  const auto s1 = tokens({10, 20, 30});
  const auto s2 = tokens({10, 20, 40, 50});  // shares two pages with s1
  cache_sequence(a, ca, s1);
  cache_sequence(a, ca, s2);
  ASSERT_EQ(ca.cached_pages(), 5);
  ::umask(022);  // the usual umask: the file's 0600 must come from the writer, not the environment
  write_prefix_file(file, kId, ca.export_nodes(100), a);
  EXPECT_FALSE(std::filesystem::exists(file + ".tmp"));
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the file holds every client's prompts: owner only";

  KVPool b(pool_config(latent, elem));
  // Other page ids in b: the seven pages a used (0..6) are taken first.
  std::vector<int32_t> held;
  for (int i = 0; i < 7; ++i) held.push_back(b.alloc());
  std::vector<RadixCache::Entry> got;
  ASSERT_EQ(read_prefix_file(file, kId, b, got), "");
  RadixCache cb(b);
  ASSERT_TRUE(cb.import_nodes(got));
  EXPECT_EQ(cb.cached_pages(), 5);
  for (const auto* s : {&s1, &s2}) {
    auto pa = ca.match(*s, 100);
    auto pb = cb.match(*s, 100);
    ASSERT_EQ(pa.size(), s->size() / 4);
    ASSERT_EQ(pb.size(), pa.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_NE(pa[i], pb[i]);
      EXPECT_EQ(page_rows(a, pa[i]), page_rows(b, pb[i])) << "page " << i;
    }
    for (int32_t p : pa) a.release(p);
    for (int32_t p : pb) b.release(p);
  }
  for (int32_t p : held) b.release(p);
}

INSTANTIATE_TEST_SUITE_P(Layouts, PrefixStore,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values(KVElem::kF32, KVElem::kBF16, KVElem::kInt8)),
                         [](const auto& i) {
                           return std::string(std::get<0>(i.param) ? "latent_" : "per_head_") +
                                  kv_elem_name(std::get<1>(i.param));
                         });

TEST(PrefixStoreFile, TheLeastRecentlyUsedLeafIsStillEvictedFirst) {
  TempDir dir;
  const std::string file = dir.path + "/f";
  KVPool a(pool_config(false, KVElem::kF32));
  RadixCache ca(a);
  const auto old_seq = tokens({1, 2});
  const auto new_seq = tokens({7, 8});
  cache_sequence(a, ca, old_seq);
  cache_sequence(a, ca, new_seq);
  for (int32_t p : ca.match(old_seq, 100)) a.release(p);  // old_seq is now the most recent
  write_prefix_file(file, kId, ca.export_nodes(100), a);
  KVPool b(pool_config(false, KVElem::kF32));
  std::vector<RadixCache::Entry> got;
  ASSERT_EQ(read_prefix_file(file, kId, b, got), "");
  RadixCache cb(b);
  ASSERT_TRUE(cb.import_nodes(got));
  ASSERT_EQ(cb.evict(2), 2);  // new_seq's two pages: least recently used
  EXPECT_EQ(cb.cached_prefix_pages(old_seq, 100), 2);
  EXPECT_EQ(cb.cached_prefix_pages(new_seq, 100), 0);
}

TEST(PrefixStoreFile, ALimitKeepsTheMostRecentPrefixAsAValidTree) {
  TempDir dir;
  const std::string file = dir.path + "/f";
  KVPool a(pool_config(false, KVElem::kF32));
  RadixCache ca(a);
  cache_sequence(a, ca, tokens({1, 2, 3}));
  cache_sequence(a, ca, tokens({1, 2, 9}));  // the newest: pages 1, 2 shared, 9 new
  const auto entries = ca.export_nodes(3);
  ASSERT_EQ(entries.size(), 3u);
  write_prefix_file(file, kId, entries, a);
  KVPool b(pool_config(false, KVElem::kF32));
  std::vector<RadixCache::Entry> got;
  ASSERT_EQ(read_prefix_file(file, kId, b, got), "");
  RadixCache cb(b);
  ASSERT_TRUE(cb.import_nodes(got));
  EXPECT_EQ(cb.cached_prefix_pages(tokens({1, 2, 9}), 100), 3);
  EXPECT_EQ(cb.cached_prefix_pages(tokens({1, 2, 3}), 100), 2);
}

// RLIMIT_FSIZE reached mid-write: with the directory set up (PrefixDir ignores SIGXFSZ) the write
// fails with an error and leaves no temp file, instead of the signal killing the process. In a
// child, which the limit and the signal would otherwise take down with the test.
TEST(PrefixStoreFile, AFileSizeLimitFailsTheWriteInsteadOfKillingTheProcess) {
  TempDir dir;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 1;
    try {
      PrefixDir d(dir.path, 0);
      KVPool a(pool_config(false, KVElem::kF32));
      RadixCache ca(a);
      cache_sequence(a, ca, tokens({1, 2, 3}));
      const rlimit lim{128, 128};  // the header fits, the entries and pages do not
      ::setrlimit(RLIMIT_FSIZE, &lim);
      try {
        write_prefix_file(d.file(), kId, ca.export_nodes(100), a);
        code = 2;  // written past the limit?
      } catch (const Error& e) {
        code = std::string(e.what()).find("File too large") != std::string::npos ? 0 : 3;
      }
      for (const auto& e : std::filesystem::directory_iterator(dir.path))
        if (e.path().filename().string().find(".tmp.") != std::string::npos) code = 4;
    } catch (...) {
      code = 5;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_FALSE(WIFSIGNALED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: setup failed, 2: no error, 3: another error, 4: temp file left";
}

TEST(PrefixStoreFile, BadFilesAreRefusedAndTakeNoPage) {
  TempDir dir;
  const std::string file = dir.path + "/f";
  KVPool a(pool_config(false, KVElem::kInt8));
  RadixCache ca(a);
  cache_sequence(a, ca, tokens({1, 2, 3}));
  write_prefix_file(file, kId, ca.export_nodes(100), a);
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto refused = [&](const std::string& content, const PrefixIdentity& id, const std::string& reason) {
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out << content;
    }
    KVPool b(pool_config(false, KVElem::kInt8));
    std::vector<RadixCache::Entry> got;
    const std::string why = read_prefix_file(file, id, b, got);
    EXPECT_NE(why.find(reason), std::string::npos) << why;
    EXPECT_TRUE(got.empty());
    EXPECT_EQ(b.free_pages(), b.n_pages());
  };
  // Every truncation, at a spread of lengths.
  for (size_t n = 0; n < bytes.size(); n += 97) refused(bytes.substr(0, n), kId, "");
  // One flipped bit anywhere after the header: in the entries or the pages.
  for (size_t at = bytes.size() / 4; at < bytes.size(); at += bytes.size() / 7) {
    std::string bad = bytes;
    bad[at] = char(bad[at] ^ 0x10);
    refused(bad, kId, "");
  }
  refused(std::string(bytes.size(), 'x'), kId, "not a dpserve prefix cache file");
  refused(bytes, {{"model digest", "2"}, {"--kv-cache-dtype (as resolved)", "fp32"}},
          "model digest: the file has 1, this server 2");
  refused(bytes, {{"model digest", "1"}, {"--kv-cache-dtype (as resolved)", "bf16"}}, "--kv-cache-dtype");
}

// Things in the directory that are not our files: a FIFO in place of the file (opening it for
// reading used to block the start for good, past SIGTERM) and one in place of the temporary file
// (opening it for writing would block until a reader came). Neither is opened; the write goes to a
// name of its own and leaves nothing but the file.
TEST(PrefixStoreFile, FifosInTheDirectoryAreNeitherReadNorWrittenThrough) {
  TempDir dir;
  const std::string file = dir.path + "/rank0.kvcache";
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  KVPool a(pool_config(false, KVElem::kF32));
  std::vector<RadixCache::Entry> got;
  EXPECT_EQ(read_prefix_file(file, kId, a, got), "not a regular file");
  EXPECT_EQ(a.free_pages(), a.n_pages());
  std::filesystem::remove(file);
  ASSERT_EQ(::mkfifo((file + ".tmp").c_str(), 0600), 0);
  RadixCache ca(a);
  cache_sequence(a, ca, tokens({1, 2, 3}));
  write_prefix_file(file, kId, ca.export_nodes(100), a);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"rank0.kvcache", "rank0.kvcache.tmp"}));
  KVPool b(pool_config(false, KVElem::kF32));
  EXPECT_EQ(read_prefix_file(file, kId, b, got), "");
  EXPECT_FALSE(got.empty());
}

}  // namespace
}  // namespace dpserve
