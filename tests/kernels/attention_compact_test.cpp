// paged_attention on compact KV caches (bf16, int8 and fp8 with a scale per row) on every ISA level:
//  * against attention in float64 over the values the cache really holds (the stored bf16 /
//    int8 / fp8 codes widened and scaled here, by the test's own encoder): a bound as tight as fp32's,
//    so the kernels read the codes and apply the scales exactly as documented;
//  * against attention over the fp32 values before encoding: a bound of the encoding's own
//    error, loose enough for rounding but failed by a scale applied wrongly (a key's scale on a
//    value, a neighbour's scale, none);
//  * each query row's result independent of how many queries its sequence has in the step
//    (speculative decoding verifies k drafted tokens at once and must get the decode result),
//    and of the page size the cache is laid out in.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "attention_fixture.h"
#include "test_util.h"

namespace dpserve {
namespace {

using namespace attn_fixture;

// Parameters: the cache's element type and a group of ISA levels (attn_fixture::ElemIsaTest).
class CompactKV : public ElemIsaTest {};

// Tight: the kernels compute in fp32 from exactly the values the cache holds (with bf16
// products, from the queries rounded to bf16, within the weights' rounding: held_bound).
TEST_P(CompactKV, EveryIsaMatchesFloat64OverTheHeldValues) {
  for (size_t ci = 0; ci < cases().size(); ++ci) {
    const Built b = build(cases()[ci], elem(), uint32_t(500 + ci));
    const std::vector<double> want = naive(b, b.cache.kd, b.cache.vd);
    for (KernelIsa isa : isas_)
      EXPECT_LT(max_err(b, run(isa, b, b.seqs), naive_held(b, isa)), held_bound(b, isa))
          << kernel_isa_name(isa) << " case " << ci;
    std::vector<float> r(size_t(b.rows * b.ld), NAN);
    ref::paged_attention(b.q.data(), b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.cache.view, b.p, r.data(), b.ld);
    EXPECT_LT(max_err(b, r, want), 2e-5) << "ref case " << ci;
  }
}

// Loose: against the fp32 values before encoding, within the encoding's error. Keys and values
// are rows scaled by 2^-2..2^1 / 2^-2..2^2; bf16 keeps 8 significant bits (relative error
// <= 2^-8), int8 a step of max|row| / 127; measured max output errors 0.005-0.008 (bf16) and
// 0.008-0.015 (int8), so the bounds are 0.02 and 0.04. fp8 keeps 4 (E4M3) / 3 (E5M2)
// significant bits, a relative error of at most 2^-4 / 2^-3 per element: at the largest value
// (4) that is 0.25 / 0.5, the bounds; measured 0.146 / 0.28. A missing or misplaced scale errs
// by the values' own size (checked: the keys' scales applied to the values gives 1.3-3.8).
TEST_P(CompactKV, EveryIsaStaysWithinTheEncodingErrorOfFp32) {
  double bound = 0.04;
  if (elem() == KVElem::kBF16) bound = 0.02;
  if (elem() == KVElem::kFp8E4M3) bound = 0.25;
  if (elem() == KVElem::kFp8E5M2) bound = 0.5;
  for (size_t ci = 0; ci < cases().size(); ++ci) {
    const Built b = build(cases()[ci], elem(), uint32_t(700 + ci));
    const std::vector<double> want = naive(b, b.cache.k, b.cache.v);
    for (KernelIsa isa : isas_)
      EXPECT_LT(max_err(b, run(isa, b, b.seqs), want), bound) << kernel_isa_name(isa) << " case " << ci;
  }
}

// A query row's output is the same bits whether its sequence has 1 query this step or many:
// each row of a 9-token extend equals that token decoded alone.
TEST_P(CompactKV, EachQueryRowIsIndependentOfTheQueriesBesideIt) {
  // (One and three query heads a KV head: a row's heads share a softmax's lanes with other rows'
  // in the extend and not alone.)
  for (const Case& c : {Case{8, 2, 64, 16, {{30, 9}}}, Case{16, 1, 72, 16, {{20, 9}}, 0, 64, true},
                        Case{3, 3, 32, 16, {{30, 9}}}, Case{6, 2, 16, 5, {{30, 9}}}}) {
    const Built b = build(c, elem(), 900);
    for (KernelIsa isa : isas_) {
      const std::vector<float> all = run(isa, b, b.seqs);
      for (int64_t i = 0; i < 9; ++i) {
        const std::vector<AttnSeq> one = {AttnSeq{i, 1, b.seqs[0].pos0 + i, b.seqs[0].pages}};
        const std::vector<float> alone = run(isa, b, one);
        ASSERT_EQ(0, std::memcmp(&alone[size_t(i * b.ld)], &all[size_t(i * b.ld)], size_t(b.ld) * sizeof(float)))
            << kernel_isa_name(isa) << " row " << i;
      }
    }
  }
}

// The AMX level shares its tiles between the rows of a job and the heads of a row (16 (row, head)
// pairs to a tile), so a row's bits must not depend on the rows beside it there either: each row
// of a wide job, within the float64 bound and bit for bit what it gets alone, where a row's 20
// heads straddle two tiles, the head dimension (80, 48) is not a whole number of tile steps,
// 7-key pages cut the 64-key steps, a window starts the rows at odd and even columns of a step,
// and rows see more than 512 keys (chunks). Run on every level.
TEST_P(CompactKV, EveryRowOfAWideJobEqualsItsRowAlone) {
  for (const Case& c : {Case{40, 2, 80, 7, {{300, 21}}, 45}, Case{20, 1, 48, 16, {{600, 18}}, 0, 40},
                        Case{4, 4, 48, 16, {{600, 18}}}}) {
    const Built b = build(c, elem(), 901);
    const int64_t n = c.seqs[0].second;
    for (KernelIsa isa : isas_) {
      const std::vector<float> all = run(isa, b, b.seqs);
      EXPECT_LT(max_err(b, all, naive_held(b, isa)), held_bound(b, isa)) << kernel_isa_name(isa) << " heads " << c.n_heads;
      for (int64_t i = 0; i < n; ++i) {
        const std::vector<AttnSeq> one = {AttnSeq{i, 1, b.seqs[0].pos0 + i, b.seqs[0].pages}};
        const std::vector<float> alone = run(isa, b, one);
        ASSERT_EQ(0, std::memcmp(&alone[size_t(i * b.ld)], &all[size_t(i * b.ld)], size_t(b.ld) * sizeof(float)))
            << kernel_isa_name(isa) << " heads " << c.n_heads << " row " << i;
      }
    }
  }
}

// The cache of b laid out again in pages of ps positions (each sequence's pages in order, one
// after another): the same row of every position and KV head, its scale with it.
struct Repaged {
  std::vector<uint8_t> k, v;
  std::vector<float> ks, vs;
  std::vector<std::vector<int32_t>> tables;
  std::vector<AttnSeq> seqs;
  KVLayerView view;
};

Repaged repage(const Built& b, int64_t ps) {
  Repaged r;
  const KVLayerView& src = b.cache.view;
  const int64_t eb = kv_elem_bytes(src.elem), kr = src.k_row_stride() * eb, vr = src.v_row_stride() * eb;
  const bool scaled = kv_elem_scaled(src.elem), latent = b.c.latent;
  int64_t pages = 0;
  for (const AttnSeq& s : b.seqs) pages += (s.pos0 + s.n_q + ps - 1) / ps;
  const int64_t rows = pages * src.n_kv_heads * ps;
  r.k.assign(size_t(rows * kr), 0);
  r.v.assign(size_t(latent ? 0 : rows * vr), 0);
  r.ks.assign(size_t(scaled ? rows : 0), 0.0f);
  r.vs.assign(size_t(scaled && !latent ? rows : 0), 0.0f);
  int64_t next = 0;
  for (const AttnSeq& s : b.seqs) {
    std::vector<int32_t> t;
    for (int64_t p = 0; p < s.pos0 + s.n_q; ++p) {
      if (p % ps == 0) t.push_back(int32_t(next++));
      for (int64_t h = 0; h < src.n_kv_heads; ++h) {
        const int64_t from = (s.pages[p / src.page_size] * src.n_kv_heads + h) * src.page_size + p % src.page_size;
        const int64_t to = (t.back() * src.n_kv_heads + h) * ps + p % ps;
        std::memcpy(&r.k[size_t(to * kr)], static_cast<const uint8_t*>(src.k) + from * kr, size_t(kr));
        if (!latent) std::memcpy(&r.v[size_t(to * vr)], static_cast<const uint8_t*>(src.v) + from * vr, size_t(vr));
        if (scaled) {
          r.ks[size_t(to)] = src.k_scale[from];
          if (!latent) r.vs[size_t(to)] = src.v_scale[from];
        }
      }
    }
    r.tables.push_back(std::move(t));
  }
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    r.seqs.push_back(b.seqs[i]);
    r.seqs.back().pages = r.tables[i].data();
  }
  r.view = src;
  r.view.page_size = ps;
  r.view.k = r.k.data();
  r.view.v = latent ? r.view.k : r.v.data();
  if (scaled) {
    r.view.k_scale = r.ks.data();
    r.view.v_scale = latent ? r.view.k_scale : r.vs.data();
  }
  return r;
}

// Steps, chunks, key pairs and sums are fixed by positions, never by pages: the same cache laid
// out in pages of 16, 5, 7 or 64 positions gives the same bits on every level (the bf16 products
// take keys in pairs from each 64-key window's first position, where pairing within each page's
// run of rows once left an odd page's last key with zero).
TEST_P(CompactKV, ThePageSizeChangesNoBit) {
  const std::vector<Case> cs = {
      Case{8, 2, 64, 16, {{300, 21}, {700, 1}, {0, 9}}},
      Case{4, 2, 24, 16, {{130, 5}}, 45},                   // a window: rows start mid-window
      Case{16, 1, 72, 16, {{200, 1}, {0, 33}}, 0, 64, true},  // MLA latent
  };
  for (size_t ci = 0; ci < cs.size(); ++ci) {
    const Built b = build(cs[ci], elem(), uint32_t(950 + ci));
    for (KernelIsa isa : isas_) {
      const std::vector<float> want = run(isa, b, b.seqs);
      for (int64_t ps : {5, 7, 64}) {
        const Repaged r = repage(b, ps);
        std::vector<float> got(size_t(b.rows * b.ld), NAN);
        paged_attention_isa(isa, b.q.data(), b.ld, r.seqs.data(), int64_t(r.seqs.size()), r.view, b.p, got.data(),
                            b.ld);
        for (int64_t row = 0; row < b.rows; ++row)
          ASSERT_EQ(0, std::memcmp(&want[size_t(row * b.ld)], &got[size_t(row * b.ld)], size_t(b.ld) * sizeof(float)))
              << kernel_isa_name(isa) << " case " << ci << " pages of " << ps << " row " << row;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Elems, CompactKV, elems_by_isa_group({KVElem::kBF16, KVElem::kInt8, KVElem::kFp8E4M3, KVElem::kFp8E5M2}),
                         elem_isa_name);

// One key, so its softmax weight is exactly 1 and the output is the value row itself: a value row
// holding every code (scale 1) must read back as the codes' values from their definitions (int8:
// the integer; fp8: fixture's fp8_values, subnormals and the largest finite value included), bit
// for bit, on every ISA level. The bulk tests above would not see one wrong subnormal.
class CompactKVCodes : public ::testing::TestWithParam<test::IsaGroup> {};

TEST_P(CompactKVCodes, EveryCodeReadsBackExactly) {
  const std::vector<KernelIsa> isas = test::isas_in(GetParam());
  DPSERVE_SKIP_IF_NO_ISAS(isas);
  for (KVElem e : {KVElem::kInt8, KVElem::kFp8E4M3, KVElem::kFp8E5M2}) {
    std::vector<double> want(256);
    std::vector<uint8_t> codes;
    for (int c = 0; c < 256; ++c) {
      if (e == KVElem::kInt8) {
        want[size_t(codes.size())] = double(int8_t(c));
      } else {
        const std::vector<double> vals = e == KVElem::kFp8E4M3 ? fp8_values(4, 3) : fp8_values(5, 2);
        if (size_t(c & 0x7f) >= vals.size()) continue;  // NaN / infinity codes: never written
        want[size_t(codes.size())] = (c & 0x80 ? -1 : 1) * vals[size_t(c & 0x7f)];
      }
      codes.push_back(uint8_t(c));
    }
    const int64_t d = int64_t(codes.size());
    std::vector<uint8_t> k(size_t(4 * d), 0), v(size_t(4 * d), 0);
    std::copy(codes.begin(), codes.end(), v.begin());
    const std::vector<float> scales(4, 1.0f);
    KVLayerView view{k.data(), v.data(), 4, 1, d};
    view.elem = e;
    view.k_scale = view.v_scale = scales.data();
    const int32_t page = 0;
    const AttnSeq seq{0, 1, 0, &page};
    const AttnParams p{1, 1, d, 1.0f};
    const std::vector<float> q = test::random_floats(d, 5);
    for (KernelIsa isa : isas) {
      std::vector<float> out(size_t(d), NAN);
      paged_attention_isa(isa, q.data(), d, &seq, 1, view, p, out.data(), d);
      for (int64_t i = 0; i < d; ++i)
        ASSERT_EQ(double(out[size_t(i)]), want[size_t(i)])
            << kv_elem_name(e) << " " << kernel_isa_name(isa) << " code " << int(codes[size_t(i)]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(IsaGroups, CompactKVCodes, ::testing::Values(test::IsaGroup::Vector, test::IsaGroup::Amx),
                         [](const auto& i) { return test::isa_group_name(i.param); });

TEST(CompactKVParams, ScaledRowsWithoutScalesAreRejected) {
  for (KVElem e : {KVElem::kInt8, KVElem::kFp8E4M3, KVElem::kFp8E5M2}) {
    Built b = build(cases()[0], e, 1);
    b.cache.view.v_scale = nullptr;
    std::vector<float> out(size_t(b.rows * b.ld));
    EXPECT_ANY_THROW(paged_attention(b.q.data(), b.ld, b.seqs.data(), 1, b.cache.view, b.p, out.data(), b.ld))
        << kv_elem_name(e);
  }
}

}  // namespace
}  // namespace dpserve
