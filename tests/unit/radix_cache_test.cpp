// Radix prefix cache against the real KV pool: page-granular matching, reference counts, LRU eviction.
#include "kv/radix_cache.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <map>
#include <numeric>
#include <string_view>
#include <tuple>

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

// LoRA: the same tokens under another adapter (or the base) never match, the same adapter does,
// eviction and the destructor still see every page, and the on-disk export keeps base pages only.
TEST(RadixCache, AdaptersNeverShareCachedPages) {
  KVPool pool(small_pool(32));
  {
    RadixCache cache(pool);
    auto a = iota_tokens(100, 8);  // 2 full pages
    auto base = cache_sequence(pool, cache, a);
    EXPECT_TRUE(cache.match(a, 100, true, 0).empty());  // adapter 0: no hit on the base's pages
    EXPECT_EQ(cache.cached_prefix_pages(a, 100, 0), 0);

    PageTable t;
    ASSERT_TRUE(t.reserve(pool, 8));
    EXPECT_EQ(cache.insert(a, t.pages, 2, 0), 2);  // adopted: the base copy is no stand-in
    const std::vector<int32_t> lora0 = t.pages;
    t.release(pool);
    EXPECT_EQ(cache.cached_pages(), 4);

    auto m = cache.match(a, 100, true, 0);  // same adapter: its own pages
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0], lora0[0]);
    EXPECT_EQ(m[1], lora0[1]);
    for (auto p : m) pool.release(p);
    EXPECT_EQ(cache.cached_prefix_pages(a, 100, 0), 2);
    EXPECT_TRUE(cache.match(a, 100, true, 1).empty());  // another adapter: nothing
    m = cache.match(a, 100);                            // the base: still the base's pages
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0], base[0]);
    EXPECT_EQ(m[1], base[1]);
    for (auto p : m) pool.release(p);

    const auto entries = cache.export_nodes(100);  // the disk file: the base's two pages only
    ASSERT_EQ(entries.size(), 2u);
    for (const auto& e : entries) EXPECT_EQ(e.key.size(), 4u);

    EXPECT_EQ(cache.evict(100), 4);
    EXPECT_EQ(pool.free_pages(), 32);
    cache_sequence(pool, cache, a);
    PageTable u;
    ASSERT_TRUE(u.reserve(pool, 8));
    cache.insert(a, u.pages, 2, 3);
    u.release(pool);
  }
  EXPECT_EQ(pool.free_pages(), 32);  // the destructor returned both subtrees
}

// An unloaded adapter's slot may be loaded with another adapter: its subtree must go entirely (every
// page back to the pool), the base's and other adapters' subtrees stay, and the LRU leaf set stays
// consistent (evict afterwards frees exactly what is left).
TEST(RadixCache, DropLoraRemovesOnlyThatAdaptersSubtree) {
  KVPool pool(small_pool(32));
  RadixCache cache(pool);
  auto a = iota_tokens(100, 12);  // 3 pages
  auto b = iota_tokens(100, 8);
  b.push_back(7), b.push_back(7), b.push_back(7), b.push_back(7);  // branches at page 3
  auto insert = [&](const std::vector<int32_t>& toks, int32_t lora) {
    PageTable t;
    ASSERT_TRUE(t.reserve(pool, int64_t(toks.size())));
    cache.insert(toks, t.pages, int64_t(toks.size()) / 4, lora);
    t.release(pool);
  };
  insert(a, -1);
  insert(a, 0);
  insert(b, 0);  // slot 0: 3 + 1 pages (a branch)
  insert(a, 1);
  EXPECT_EQ(cache.cached_pages(), 10);
  EXPECT_EQ(pool.free_pages(), 22);
  EXPECT_EQ(cache.drop_lora(0), 4);
  EXPECT_EQ(cache.cached_pages(), 6);
  EXPECT_EQ(pool.free_pages(), 26);
  EXPECT_TRUE(cache.match(a, 100, true, 0).empty());
  EXPECT_EQ(cache.cached_prefix_pages(b, 100, 0), 0);
  EXPECT_EQ(cache.cached_prefix_pages(a, 100, 1), 3);  // slot 1 and the base untouched
  EXPECT_EQ(cache.cached_prefix_pages(a, 100), 3);
  EXPECT_EQ(cache.drop_lora(0), 0);   // nothing left there
  EXPECT_EQ(cache.drop_lora(-1), 0);  // the base is not an adapter
  EXPECT_EQ(cache.evict(100), 6);
  EXPECT_EQ(pool.free_pages(), 32);
  EXPECT_EQ(cache.cached_pages(), 0);
}

// vLLM's cache_salt: a salted prefix is found only under the same salt and adapter; the shared
// (unsalted) tree and other salts see nothing of it, and it sees nothing of theirs. Salts that
// differ only in length or in a byte past the first word stay apart. Unloading an adapter drops its
// salted pages too; the on-disk export never holds salted pages.
TEST(RadixCache, SaltedPrefixesAreSharedOnlyUnderTheSameSalt) {
  KVPool pool(small_pool(64));
  RadixCache cache(pool);
  auto a = iota_tokens(100, 8);  // 2 pages
  auto insert = [&](int32_t lora, std::string_view salt) {
    PageTable t;
    ASSERT_TRUE(t.reserve(pool, 8));
    EXPECT_EQ(cache.insert(a, t.pages, 2, lora, salt), 2) << "lora " << lora << " salt '" << salt << "'";
    t.release(pool);
  };
  insert(-1, "tenant-a");
  EXPECT_EQ(cache.cached_prefix_pages(a, 100, -1, "tenant-a"), 2);
  for (std::string_view other : std::initializer_list<std::string_view>{"", "tenant-b", "tenant-", "tenant-a ", "tenant-A",
                                                                        std::string_view("tenant-a\0", 9)})
    EXPECT_EQ(cache.cached_prefix_pages(a, 100, -1, other), 0) << "salt '" << other << "'";
  EXPECT_EQ(cache.cached_prefix_pages(a, 100, 0, "tenant-a"), 0);  // another adapter, same salt
  EXPECT_TRUE(cache.match(a, 100, true, -1, "tenant-b").empty());
  // The shared tree's pages are not the salted request's either.
  insert(-1, "");
  insert(0, "tenant-a");
  insert(0, "");
  EXPECT_EQ(cache.cached_pages(), 8);
  EXPECT_TRUE(cache.match(a, 100, true, -1, "tenant-c").empty());
  auto m = cache.match(a, 100, true, -1, "tenant-a");
  ASSERT_EQ(m.size(), 2u);
  for (int32_t p : m) pool.release(p);
  EXPECT_TRUE(cache.export_nodes(100).size() == 2u);  // only the shared base pages go to disk
  EXPECT_EQ(cache.drop_lora(0), 4);  // adapter 0's salted and unsalted pages
  EXPECT_EQ(cache.cached_prefix_pages(a, 100, -1, "tenant-a"), 2);
  EXPECT_EQ(cache.cached_prefix_pages(a, 100), 2);
  EXPECT_EQ(cache.evict(100), 4);
  EXPECT_EQ(pool.free_pages(), 64);
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

// A naive model of the cache: a flat map from every cached prefix to (page, last use, creation serial).
struct NaiveCache {
  struct E {
    int32_t page;
    uint64_t last_use, serial;
  };
  std::map<std::vector<int32_t>, E> entries;
  uint64_t clock = 0, serial = 1;

  std::vector<int32_t> match(const std::vector<int32_t>& toks) {
    ++clock;
    std::vector<int32_t> pages;
    for (size_t end = 4; end <= toks.size(); end += 4) {
      auto it = entries.find(std::vector<int32_t>(toks.begin(), toks.begin() + end));
      if (it == entries.end()) break;
      it->second.last_use = clock;
      pages.push_back(it->second.page);
    }
    return pages;
  }
  void insert(const std::vector<int32_t>& toks, const std::vector<int32_t>& pages) {
    ++clock;
    for (size_t i = 0; i < pages.size(); ++i) {
      std::vector<int32_t> key(toks.begin(), toks.begin() + 4 * (i + 1));
      auto [it, fresh] = entries.try_emplace(key, E{pages[i], clock, serial});
      if (fresh) ++serial;
      it->second.last_use = clock;
    }
  }
  // The page evict(1) must free: the least recently used entry nothing extends, used by nobody else.
  int32_t victim(const KVPool& pool) const {
    const std::vector<int32_t>* best = nullptr;
    std::tuple<uint64_t, uint64_t> best_key{~0ull, ~0ull};
    for (auto& [k, e] : entries) {
      bool leaf = true;
      for (auto& [k2, e2] : entries)
        if (k2.size() == k.size() + 4 && std::equal(k.begin(), k.end(), k2.begin())) leaf = false;
      if (!leaf || pool.refcount(e.page) != 1) continue;
      if (std::make_tuple(e.last_use, e.serial) < best_key) {
        best_key = {e.last_use, e.serial};
        best = &k;
      }
    }
    return best ? entries.at(*best).page : -1;
  }
};

TEST(RadixCache, RandomOperationsMatchANaiveModel) {
  KVPool pool(small_pool(48));
  RadixCache cache(pool);
  NaiveCache model;
  uint32_t x = 3;
  auto rnd = [&x](uint32_t n) {
    x = x * 1664525u + 1013904223u;
    return (x >> 8) % n;
  };
  auto random_seq = [&] {
    std::vector<int32_t> t;
    int n = 1 + int(rnd(20));
    for (int i = 0; i < n; ++i) t.push_back(int32_t(rnd(i < 8 ? 2 : 3)));  // small alphabet: many shared prefixes
    return t;
  };
  std::vector<std::vector<int32_t>> held;  // pages "requests" hold
  int64_t evictions = 0;
  for (int op = 0; op < 3000; ++op) {
    uint32_t kind = rnd(4);
    if (kind == 0) {
      auto t = random_seq();
      auto got = cache.match(t, 100);
      ASSERT_EQ(got, model.match(t)) << "op " << op;
      held.push_back(got);
    } else if (kind == 1 && !held.empty()) {
      size_t i = rnd(uint32_t(held.size()));
      for (auto p : held[i]) pool.release(p);
      held.erase(held.begin() + long(i));
    } else if (kind == 2) {
      auto t = random_seq();
      int64_t n_full = int64_t(t.size()) / 4;
      PageTable pt;
      if (!pt.reserve(pool, n_full * 4)) continue;  // pool full: only explicit evictions below make room
      cache.insert(t, pt.pages, n_full);
      model.insert(t, pt.pages);  // both keep an existing prefix's page and adopt only fresh ones
      pt.release(pool);
    } else {
      int32_t want = model.victim(pool);
      int64_t freed = cache.evict(1);
      ASSERT_EQ(freed, want >= 0 ? 1 : 0) << "op " << op;
      if (want >= 0) {
        EXPECT_EQ(pool.refcount(want), 0) << "op " << op;  // exactly the predicted page went back
        for (auto it = model.entries.begin(); it != model.entries.end(); ++it)
          if (it->second.page == want) {
            model.entries.erase(it);
            break;
          }
        ++evictions;
      }
    }
    ASSERT_EQ(cache.cached_pages(), int64_t(model.entries.size())) << "op " << op;
  }
  EXPECT_GT(evictions, 100);
  for (auto& h : held)
    for (auto p : h) pool.release(p);
}

}  // namespace
}  // namespace dpserve
