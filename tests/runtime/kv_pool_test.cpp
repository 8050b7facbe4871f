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

// MLA: one row [c_kv | k_pe] per position and layer, whatever the head count; the attention view
// reads the whole row as the key and its c_kv prefix as the value.
TEST(KVPool, LatentRowsDoNotOverlapAndTheViewAliasesValueAndKey) {
  const int64_t L = 2, R = 6, P = 2, ps = 3, pages = 4;
  KVPool pool(KVPoolConfig::latent(L, R, P, ps, pages));
  float v = 0;
  for (int l = 0; l < L; ++l)
    for (int p = 0; p < pages; ++p)
      for (int s = 0; s < ps; ++s)
        for (int d = 0; d < R + P; ++d) pool.latent_at(l, p, s)[d] = v++;
  v = 0;
  for (int l = 0; l < L; ++l)
    for (int p = 0; p < pages; ++p)
      for (int s = 0; s < ps; ++s)
        for (int d = 0; d < R + P; ++d) ASSERT_EQ(pool.latent_at(l, p, s)[d], v++);
  const KVLayerView view = pool.layer(1);
  EXPECT_EQ(view.n_kv_heads, 1);
  EXPECT_EQ(view.head_dim, R + P);
  EXPECT_EQ(view.value_dim(), R);
  EXPECT_EQ(view.k, view.v);
  EXPECT_EQ(view.k + 2 * view.k_page_stride() + 1 * view.k_row_stride(), pool.latent_at(1, 2, 1));
}

// The pool counts bytes per position from what the attention kind stores, not from heads.
TEST(KVPool, BytesPerTokenFollowTheAttentionKind) {
  const KVPoolConfig per_head{27, 2, 128, 16, 10};
  EXPECT_EQ(per_head.bytes_per_token(), 27 * 2 * 2 * 128 * 4);
  EXPECT_EQ(per_head.bytes_per_page(), per_head.bytes_per_token() * 16);
  // DeepSeek-V2-Lite: kv_lora_rank 512 + qk_rope_head_dim 64, fp32, whatever the number of heads.
  const KVPoolConfig mla = KVPoolConfig::latent(27, 512, 64, 16, 10);
  EXPECT_EQ(mla.bytes_per_token(), 27 * 576 * 4);
  EXPECT_EQ(KVPool(mla).bytes(), mla.bytes_per_page() * 10);
  EXPECT_NE(mla.describe().find("latent"), std::string::npos);
}
