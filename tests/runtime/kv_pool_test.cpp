#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/fp8.h"
#include "kv/kv_codec.h"
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

// Row r's values: integer codes with one of them 127, times a power of two. Every storage type
// holds them exactly (bf16: at most 8 significant bits; int8: the row's scale is that power of
// two), so a read that returns anything else read the wrong bytes.
// fp8 rows instead hold integers -7..7 (at most 3 significant bits) with one of them 7: the
// largest finite values (448 = 7 * 2^6, 57344 = 7 * 2^13) make the scale a power of two too.
std::vector<float> row_values(int64_t r, int64_t n, KVElem e = KVElem::kF32) {
  std::vector<float> v(static_cast<size_t>(n));
  const float c = std::ldexp(1.0f, -int(r % 5));
  const bool fp8 = e == KVElem::kFp8E4M3 || e == KVElem::kFp8E5M2;
  for (int64_t d = 0; d < n; ++d) {
    if (fp8)
      v[size_t(d)] = c * float(d == r % n ? 7 : (r * 7 + d * 13) % 15 - 7);
    else
      v[size_t(d)] = c * float(d == r % n ? 127 : (r * 7 + d * 13) % 200 - 100);
  }
  return v;
}

class KVPoolElems : public ::testing::TestWithParam<KVElem> {};

TEST_P(KVPoolElems, SlotsOfDifferentPagesHeadsAndLayersDoNotOverlap) {
  KVPoolConfig cfg{3, 2, 20, 2, 3};
  cfg.elem = GetParam();
  KVPool pool(cfg);
  // Write a distinct row into every (layer, page, head, slot, k/v) and read all back.
  const int64_t hd = 20;
  int64_t r = 0;
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 3; ++p)
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 2; ++s) {
          pool.write_k(l, p, h, s, row_values(r++, hd, GetParam()).data());
          pool.write_v(l, p, h, s, row_values(r++, hd, GetParam()).data());
        }
  r = 0;
  std::vector<float> got(hd);
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 3; ++p)
      for (int h = 0; h < 2; ++h)
        for (int s = 0; s < 2; ++s) {
          pool.read_k(l, p, h, s, got.data());
          ASSERT_EQ(got, row_values(r++, hd, GetParam())) << "k " << l << p << h << s;
          pool.read_v(l, p, h, s, got.data());
          ASSERT_EQ(got, row_values(r++, hd, GetParam())) << "v " << l << p << h << s;
        }
  // The attention view sees the same bytes with the documented layout: layer 1, page 2, head 1,
  // slot 1, decoded from the view, is what was written there.
  const KVLayerView view = pool.layer(1);
  EXPECT_EQ(view.elem, GetParam());
  const int64_t row = (2 * view.n_kv_heads + 1) * view.page_size + 1;
  const int64_t eb = kv_elem_bytes(view.elem);
  std::vector<float> k(hd), v(hd);
  kv_decode_row(view.elem, static_cast<const char*>(view.k) + row * view.head_dim * eb, hd,
                view.k_scale ? view.k_scale[row] : 1.0f, k.data());
  kv_decode_row(view.elem, static_cast<const char*>(view.v) + row * view.head_dim * eb, hd,
                view.v_scale ? view.v_scale[row] : 1.0f, v.data());
  const int64_t r_k = ((1 * 3 + 2) * 2 + 1) * 2 * 2 + 1 * 2;  // the order of the writes above
  EXPECT_EQ(k, row_values(r_k, hd, GetParam()));
  EXPECT_EQ(v, row_values(r_k + 1, hd, GetParam()));
  EXPECT_EQ(view.k_scale != nullptr, kv_elem_scaled(GetParam()));
}

// MLA: one row [c_kv | k_pe] per position and layer, whatever the head count; the attention view
// reads the whole row as the key and its c_kv prefix as the value.
TEST_P(KVPoolElems, LatentRowsDoNotOverlapAndTheViewAliasesValueAndKey) {
  const int64_t L = 2, R = 6, P = 2, ps = 3, pages = 4;
  KVPoolConfig cfg = KVPoolConfig::latent(L, R, P, ps, pages);
  cfg.elem = GetParam();
  KVPool pool(cfg);
  int64_t r = 0;
  for (int l = 0; l < L; ++l)
    for (int p = 0; p < pages; ++p)
      for (int s = 0; s < ps; ++s) pool.write_latent(l, p, s, row_values(r++, R + P, GetParam()).data());
  r = 0;
  std::vector<float> got(R + P);
  for (int l = 0; l < L; ++l)
    for (int p = 0; p < pages; ++p)
      for (int s = 0; s < ps; ++s) {
        pool.read_latent(l, p, s, got.data());
        ASSERT_EQ(got, row_values(r++, R + P, GetParam()));
      }
  const KVLayerView view = pool.layer(1);
  EXPECT_EQ(view.n_kv_heads, 1);
  EXPECT_EQ(view.head_dim, R + P);
  EXPECT_EQ(view.value_dim(), R);
  EXPECT_EQ(view.k, view.v);
  EXPECT_EQ(view.k_scale, view.v_scale);
  const int64_t row = 2 * ps + 1;
  std::vector<float> k(R + P);
  kv_decode_row(view.elem, static_cast<const char*>(view.k) + row * view.k_row_stride() * kv_elem_bytes(view.elem),
                R + P, view.k_scale ? view.k_scale[row] : 1.0f, k.data());
  EXPECT_EQ(k, row_values(pages * ps + row, R + P, GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Elems, KVPoolElems,
                         ::testing::Values(KVElem::kF32, KVElem::kBF16, KVElem::kInt8, KVElem::kFp8E4M3,
                                           KVElem::kFp8E5M2),
                         [](const auto& i) { return std::string(kv_elem_name(i.param)); });

// int8 rows: codes round(x / s) with s = max|x| / 127, so every value is within s / 2 of what was
// written, and the largest one exact.
TEST(KVCodec, Int8RowsAreWithinHalfAScaleStep) {
  std::vector<float> x(64), back(64);
  for (int i = 0; i < 64; ++i) x[size_t(i)] = std::sin(0.37f * float(i)) * 3.0f;
  x[17] = -5.0f;
  std::vector<int8_t> q(64);
  float s = 0;
  kv_encode_row(KVElem::kInt8, x.data(), 64, q.data(), &s);
  EXPECT_FLOAT_EQ(s, 5.0f / 127.0f);
  EXPECT_EQ(q[17], -127);
  kv_decode_row(KVElem::kInt8, q.data(), 64, s, back.data());
  for (int i = 0; i < 64; ++i) EXPECT_LE(std::fabs(back[size_t(i)] - x[size_t(i)]), s / 2 * 1.0001f) << i;
  std::vector<float> zero(8, 0.0f), zback(8, 1.0f);
  kv_encode_row(KVElem::kInt8, zero.data(), 8, q.data(), &s);
  kv_decode_row(KVElem::kInt8, q.data(), 8, s, zback.data());
  EXPECT_EQ(zback, zero);
}

// fp8 rows: every value read back is the representable value (code value times the row's
// scale max|x| / the format's largest finite value) nearest what was written, the largest one is
// exact, and the codes' values come from the OCP FP8 definition, written out here: E4M3 bias 7,
// largest finite 448 (0x7e); E5M2 bias 15, largest 57344 (0x7b); subnormals at exponent 0.
TEST(KVCodec, Fp8RowsHoldTheNearestRepresentableValue) {
  for (const KVElem e : {KVElem::kFp8E4M3, KVElem::kFp8E5M2}) {
    const int E = e == KVElem::kFp8E4M3 ? 4 : 5, M = 7 - E, bias = (1 << (E - 1)) - 1;
    const int top = E == 4 ? 0x7e : 0x7b;
    std::vector<double> vals;  // non-negative finite values by code
    for (int c = 0; c <= top; ++c) {
      const int ex = c >> M, m = c & ((1 << M) - 1);
      vals.push_back(ex == 0 ? std::ldexp(double(m), 1 - bias - M) : std::ldexp(double((1 << M) + m), ex - bias - M));
    }
    ASSERT_EQ(vals.back(), E == 4 ? 448.0 : 57344.0);
    // Magnitudes over 2^-22 .. 2^3: E4M3's row reaches its subnormals, E5M2's keeps normals.
    std::vector<float> x(96), back(96);
    for (int i = 0; i < 96; ++i) x[size_t(i)] = std::sin(0.61f * float(i)) * std::ldexp(1.0f, 3 - (i % 26));
    x[40] = -9.0f;
    std::vector<uint8_t> q(96);
    float s = 0;
    kv_encode_row(e, x.data(), 96, q.data(), &s);
    EXPECT_FLOAT_EQ(s, 9.0f / float(vals.back())) << kv_elem_name(e);
    kv_decode_row(e, q.data(), 96, s, back.data());
    EXPECT_FLOAT_EQ(back[40], -9.0f) << kv_elem_name(e);
    for (int i = 0; i < 96; ++i) {
      const double a = std::fabs(double(x[size_t(i)]) / double(s));
      double best = INFINITY;
      for (double v : vals) best = std::min(best, std::fabs(v - a));
      // The code's own value (sign bit 7) is one of the format's, and the nearest one.
      const int code = q[size_t(i)];
      const double held = vals[size_t(code & 0x7f)];
      EXPECT_NEAR(std::fabs(held - a), best, 1e-9 * a) << kv_elem_name(e) << " element " << i;
      EXPECT_EQ(bool(code & 0x80), x[size_t(i)] < 0) << kv_elem_name(e) << " element " << i;
      EXPECT_NEAR(back[size_t(i)], float((code & 0x80 ? -1 : 1) * held) * s, 1e-6f * std::fabs(back[size_t(i)]));
    }
    std::vector<float> zero(8, 0.0f), zback(8, 1.0f);
    kv_encode_row(e, zero.data(), 8, q.data(), &s);
    kv_decode_row(e, q.data(), 8, s, zback.data());
    EXPECT_EQ(zback, zero);
  }
}

// Rounding at every boundary: a row [largest finite value, x] has scale 1, so x's code is x
// rounded in the format. At each midpoint between neighbouring values the even code (mantissa
// ending in 0) wins; a hair either side the nearer one; past the largest finite value it
// saturates. Both neighbours and the midpoints come from the definition, not the encoder.
TEST(KVCodec, Fp8RoundsToNearestEvenAtEveryMidpoint) {
  for (const KVElem e : {KVElem::kFp8E4M3, KVElem::kFp8E5M2}) {
    const int E = e == KVElem::kFp8E4M3 ? 4 : 5, M = 7 - E, bias = (1 << (E - 1)) - 1;
    const int top = E == 4 ? 0x7e : 0x7b;
    auto value = [&](int c) {
      const int ex = c >> M, m = c & ((1 << M) - 1);
      return ex == 0 ? std::ldexp(double(m), 1 - bias - M) : std::ldexp(double((1 << M) + m), ex - bias - M);
    };
    auto code_of = [&](float x) {
      const float row[2] = {float(value(top)), x};
      uint8_t q[2];
      float s = 0;
      kv_encode_row(e, row, 2, q, &s);
      EXPECT_EQ(s, 1.0f);
      return int(q[1]);
    };
    for (int c = 0; c < top; ++c) {
      const double lo = value(c), hi = value(c + 1), mid = (lo + hi) / 2;
      ASSERT_EQ(double(float(mid)), mid);  // the midpoints are exact in fp32
      for (const int sign : {1, -1}) {
        const int s8 = sign < 0 ? 0x80 : 0;
        EXPECT_EQ(code_of(float(sign * lo)), c | s8) << kv_elem_name(e) << " value of code " << c;
        EXPECT_EQ(code_of(float(sign * mid)), ((c % 2 == 0) ? c : c + 1) | s8) << kv_elem_name(e) << " midpoint " << c;
        EXPECT_EQ(code_of(std::nextafter(float(sign * mid), 0.0f)), c | s8) << kv_elem_name(e) << " below " << c;
        EXPECT_EQ(code_of(std::nextafter(float(sign * mid), float(sign) * INFINITY)), (c + 1) | s8)
            << kv_elem_name(e) << " above " << c;
      }
    }
    // Past the largest finite value (a row's scale keeps its own values inside; the scalar
    // conversion saturates whatever it is given, infinity included).
    for (const float x : {float(value(top)) * 1.5f, float(value(top)) * 1.01f, INFINITY}) {
      const int want = top;
      EXPECT_EQ(E == 4 ? f32_to_fp8_e4m3(x).bits : f32_to_fp8_e5m2(x).bits, want) << x;
      EXPECT_EQ(E == 4 ? f32_to_fp8_e4m3(-x).bits : f32_to_fp8_e5m2(-x).bits, want | 0x80) << -x;
    }
  }
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
  // bf16 halves the values; int8 quarters them and adds one fp32 scale per row (K and V of each
  // head; one latent row).
  KVPoolConfig bf = per_head, i8 = per_head, mla8 = mla;
  bf.elem = KVElem::kBF16;
  i8.elem = KVElem::kInt8;
  mla8.elem = KVElem::kInt8;
  EXPECT_EQ(bf.bytes_per_token(), 27 * 2 * 2 * 128 * 2);
  EXPECT_EQ(i8.bytes_per_token(), 27 * (2 * 2 * 128 + 2 * 2 * 4));
  EXPECT_EQ(mla8.bytes_per_token(), 27 * (576 + 4));
  EXPECT_NE(i8.describe().find("int8"), std::string::npos);
  // fp8 costs what int8 does: a byte per value and a scale per row.
  KVPoolConfig f8 = per_head;
  f8.elem = KVElem::kFp8E4M3;
  EXPECT_EQ(f8.bytes_per_token(), i8.bytes_per_token());
  EXPECT_NE(f8.describe().find("fp8_e4m3"), std::string::npos);
}
