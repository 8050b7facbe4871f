// paged_attention on compact KV caches (bf16, int8 and fp8 with a scale per row) on every ISA level:
//  * against attention in float64 over the values the cache really holds (the stored bf16 /
//    int8 / fp8 codes widened and scaled here, by the test's own encoder): a bound as tight as fp32's,
//    so the kernels read the codes and apply the scales exactly as documented;
//  * against attention over the fp32 values before encoding: a bound of the encoding's own
//    error, loose enough for rounding but failed by a scale applied wrongly (a key's scale on a
//    value, a neighbour's scale, none);
//  * each query row's result independent of how many queries its sequence has in the step
//    (speculative decoding verifies k drafted tokens at once and must get the decode result).
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
  for (const Case& c : {Case{8, 2, 64, 16, {{30, 9}}}, Case{16, 1, 72, 16, {{20, 9}}, 0, 64, true}}) {
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
  for (const Case& c : {Case{40, 2, 80, 7, {{300, 21}}, 45}, Case{20, 1, 48, 16, {{600, 18}}, 0, 40}}) {
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
