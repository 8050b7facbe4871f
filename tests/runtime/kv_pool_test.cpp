#include <gtest/gtest.h>

#include "kv/kv_pool.h"

using namespace dpserve;

TEST(KVPool, PagesAreReferenceCountedAndReturned) {
  KVPool pool(KVPoolConfig{2, 2, 8, 4, 5});
  EXPECT_EQ(pool.free_pages(), 5);
  PageTable a, b;
  ASSERT_TRUE(a.reserve(pool, 9));  // 3 pages of 4
  EXPECT_EQ(a.pages.size(), 3u);
  EXPECT_EQ(pool.free_pages(), 2);
  EXPECT_FALSE(b.reserve(pool, 12));  // needs 3, only 2 left: no partial allocation
  EXPECT_TRUE(b.pages.empty());
  EXPECT_EQ(pool.free_pages(), 2);
  pool.retain(a.pages[0]);
  a.release(pool);
  EXPECT_EQ(pool.free_pages(), 4);  // page 0 is still held by the extra reference
  ASSERT_TRUE(b.reserve(pool, 16));
  EXPECT_EQ(pool.free_pages(), 0);
  EXPECT_EQ(pool.alloc(), -1);
}

TEST(KVPool, SlotsOfDifferentPagesHeadsAndLayersDoNotOverlap) {
  KVPool pool(KVPoolConfig{3, 2, 4, 2, 3});
  // Write a distinct value into every (layer, page, head, slot, k/v) element and read all back.
  float v = 0;
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 3; ++p)
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 2; ++s)
          for (int d = 0; d < 4; ++d) {
            pool.k_at(l, p, h, s)[d] = v++;
            pool.v_at(l, p, h, s)[d] = v++;
          }
  v = 0;
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 3; ++p)
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 2; ++s)
          for (int d = 0; d < 4; ++d) {
            ASSERT_EQ(pool.k_at(l, p, h, s)[d], v++);
            ASSERT_EQ(pool.v_at(l, p, h, s)[d], v++);
          }
  // The attention view sees the same memory with the documented layout.
  KVLayerView view = pool.layer(1);
  EXPECT_EQ(view.k + (2 * view.n_kv_heads + 1) * view.page_size * view.head_dim + 1 * view.head_dim,
            pool.k_at(1, 2, 1, 1));
}
