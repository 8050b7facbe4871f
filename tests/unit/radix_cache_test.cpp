// Radix prefix cache against the real KV pool: page-granular matching, reference counts, LRU eviction.
#include "kv/radix_cache.h"

#include <gtest/gtest.h>

#include <numeric>

namespace dpserve {
namespace {

KVPoolConfig small_pool(int64_t n_pages) {
  KVPoolConfig c;
  c.n_layers = 1;
  c.n_kv_heads = 1;
  c.head_dim = 1;
  c.page_size = 4;
  c.n_pages = n_pages;
  return c;
}

std::vector<int32_t> iota_tokens(int32_t first, int n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// A sequence's pages as a request would hold them, inserted into the cache and then released.
std::vector<int32_t> cache_sequence(KVPool& pool, RadixCache& cache, const std::vector<int32_t>& toks) {
  PageTable t;
  EXPECT_TRUE(t.reserve(pool, int64_t(toks.size())));
  t.len = int64_t(toks.size());
  std::vector<int32_t> pages = t.pages;
  cache.insert(toks, t.pages, t.len / pool.page_size());
  t.release(pool);
  return pages;
}

TEST(RadixCache, MatchesWholePagesOfTheLongestPrefix) {
  KVPool pool(small_pool(16));
  RadixCache cache(pool);
  auto a = iota_tokens(100, 10);  // 2 full pages + 2 tokens
  auto pages = cache_sequence(pool, cache, a);
  EXPECT_EQ(cache.cached_pages(), 2);
  EXPECT_EQ(pool.free_pages(), 14);  // the partial third page went back

  // Identical prompt: both full pages.
  auto m = cache.match(a, 100);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], pages[0]);
  EXPECT_EQ(m[1], pages[1]);
  EXPECT_EQ(pool.refcount(m[0]), 2);
  for (auto p : m) pool.release(p);

  // Shares 6 tokens: only the first page.
  auto b = iota_tokens(100, 6);
  b.push_back(7);
  b.push_back(8);
  m = cache.match(b, 100);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], pages[0]);
  pool.release(m[0]);

  // max_pages caps the match.
  m = cache.match(a, 1);
  EXPECT_EQ(m.size(), 1u);
  pool.release(m[0]);

  // Differs in the first token: nothing.
  auto c = a;
  c[0] = 5;
  EXPECT_TRUE(cache.match(c, 100).empty());

  EXPECT_EQ(cache.query_tokens(), 10 + 8 + 10 + 10);
  EXPECT_EQ(cache.hit_tokens(), 8 + 4 + 4);
  // Uncounted lookups leave the statistics alone.
  m = cache.match(a, 100, false);
  for (auto p : m) pool.release(p);
  EXPECT_EQ(cache.query_tokens(), 38);
}

TEST(RadixCache, InsertKeepsExistingPagesAndBranches) {
  KVPool pool(small_pool(16));
  RadixCache cache(pool);
  auto a = iota_tokens(0, 12);
  auto pa = cache_sequence(pool, cache, a);
  // Same first page, different second: the tree branches, the duplicate first page is not adopted.
  auto b = iota_tokens(0, 4);
  for (int i = 0; i < 8; ++i) b.push_back(50 + i);
  PageTable t;
  ASSERT_TRUE(t.reserve(pool, 12));
  EXPECT_EQ(cache.insert(b, t.pages, 3), 2);
  t.release(pool);
  EXPECT_EQ(cache.cached_pages(), 5);
  EXPECT_EQ(pool.free_pages(), 16 - 5);
  auto m = cache.match(b, 100);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0], pa[0]);  // the tree's copy of the shared page
  EXPECT_NE(m[1], pa[1]);
  for (auto p : m) pool.release(p);
}

TEST(RadixCache, EvictsLeastRecentlyUsedUnreferencedLeaves) {
  KVPool pool(small_pool(16));
  RadixCache cache(pool);
  auto a = iota_tokens(0, 8);
  auto b = iota_tokens(1000, 8);
  auto c = iota_tokens(2000, 8);
  auto pa = cache_sequence(pool, cache, a);
  auto pb = cache_sequence(pool, cache, b);
  auto pc = cache_sequence(pool, cache, c);
  EXPECT_EQ(cache.evictable_pages(), 6);
  // Touch a: b becomes the least recently used, then c.
  auto m = cache.match(a, 100);
  for (auto p : m) pool.release(p);
  // Hold c's first page as a running request would: c is not evictable at all (its leaf's parent is
  // in use, and the leaf goes first, so only the leaf may go).
  auto held = cache.match(c, 1);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(cache.evictable_pages(), 5);

  EXPECT_EQ(cache.evict(2), 2);  // b's leaf, then b's root page
  EXPECT_EQ(cache.match(b, 100, false).size(), 0u);
  EXPECT_EQ(cache.evict(1), 1);  // c's leaf (a was used more recently)
  m = cache.match(a, 100, false);
  EXPECT_EQ(m.size(), 2u);
  for (auto p : m) pool.release(p);
  // c's first page is referenced: only a's two pages can still go.
  EXPECT_EQ(cache.evict(100), 2);
  EXPECT_EQ(cache.cached_pages(), 1);
  EXPECT_EQ(cache.evicted_pages(), 5);
  pool.release(held[0]);
  EXPECT_EQ(cache.evict(100), 1);
  EXPECT_EQ(pool.free_pages(), 16);
}

TEST(RadixCache, DestructorReturnsEveryPage) {
  KVPool pool(small_pool(64));
  {
    RadixCache cache(pool);
    cache_sequence(pool, cache, iota_tokens(0, 200));  // a 50-page chain
    cache_sequence(pool, cache, iota_tokens(0, 20));
    EXPECT_EQ(pool.free_pages(), 14);
  }
  EXPECT_EQ(pool.free_pages(), 64);
}

}  // namespace
}  // namespace dpserve
