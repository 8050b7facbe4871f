// paged_attention over long contexts, where a row's keys are split into chunks (partial softmax
// per chunk, merged in chunk order: kernels/attention_impl.h) so one decoding sequence runs on
// the whole team:
//  * rows of several chunks (lengths not a multiple of the chunk, a sliding window, GQA, MQA, a
//    page size that cuts chunks mid-page, MLA's latent, an extend of more rows than one job
//    takes) against float64 attention from the definition and against ref::paged_attention, on
//    every ISA level, every KV element type, teams of 1, 2 and 3;
//  * a row's bits equal for teams of 1, 2 and 3 members, and alone or in a batch (small batches,
//    where the driver gives each chunk its own job, and a large one, where one job runs a row's
//    chunks in turn);
//  * each row of a long prefill chunk (rows that walk the pages together in one job, some of
//    them across the split length, with a window and with pages that cut chunks) equal to that
//    row decoded alone.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "attention_fixture.h"
#include "kernels/attention.h"
#include "kernels/isa.h"
#include "kernels/team.h"
#include "test_util.h"

namespace dpserve {
namespace {

using namespace attn_fixture;

// Chunks are 256 keys once a row sees more than 512 (kernels::kKeyChunk / kSplitAbove).
const std::vector<Case>& long_cases() {
  static const std::vector<Case> cs = {
      {8, 2, 64, 16, {{1300, 1}, {2000, 3}}},             // GQA 4: decode and verify, 1301 keys (5 chunks + 21)
      {4, 2, 32, 16, {{1500, 2}}, 700},                   // sliding window of 700: chunks start mid-way
      {4, 1, 40, 7, {{1100, 1}, {600, 1}}},               // MQA, odd head dim, 7-key pages cut by chunks
      {16, 1, 72, 16, {{900, 1}}, 0, 64, true},           // MLA latent: one KV head, V = prefix of K
      {6, 1, 160, 16, {{700, 1}, {600, 3}}, 0, 128, true},  // a latent wider than 128 (two blocks by eight)
      {8, 2, 64, 16, {{1000, 6}}},                        // an extend longer than one job's 4 rows
      {4, 2, 16, 16, {{511, 1}, {512, 1}, {513, 1}}},     // around the split length (512 / 513 / 514 keys)
      // Sinks (gpt-oss): a chunk that counted its row's sink, or a merge that added it twice, errs.
      {8, 2, 64, 16, {{1300, 1}, {900, 4}}, 0, 0, false, {-2.0f, 0.0f, 1.0f, 2.0f, 3.0f, 4.0f, -1.0f, 5.0f}},
      {4, 2, 32, 16, {{1500, 2}}, 700, 0, false, {0.5f, 1.5f, 2.5f, 3.5f}},
  };
  return cs;
}

KVLayerView view_of(const Built& b) { return b.cache.view; }

// paged_attention_isa on a team of n members.
std::vector<float> run_team(KernelIsa isa, int n, const Built& b, const std::vector<AttnSeq>& seqs) {
  std::vector<float> out(size_t(b.rows * b.ld), NAN);
  ThreadTeam team(n);
  team.run([&](Team& t) {
    paged_attention_isa(isa, t, b.q.data(), b.ld, seqs.data(), int64_t(seqs.size()), view_of(b), b.p, out.data(),
                        b.ld);
  });
  return out;
}

// Parameters: the cache's element type and a group of ISA levels (attn_fixture::ElemIsaTest).
class SplitKV : public ElemIsaTest {};

// Same tight bound as the short cases (attention_compact_test): the split and the merge add
// only fp32 rounding, and a chunk lost, counted twice or merged with the wrong max errs by the
// values' own size.
TEST_P(SplitKV, LongRowsMatchFloat64AndTheReference) {
  for (size_t ci = 0; ci < long_cases().size(); ++ci) {
    const Built b = build(long_cases()[ci], elem(), uint32_t(1100 + ci));
    const std::vector<double> want = naive(b, b.cache.kd, b.cache.vd);
    std::vector<float> r(size_t(b.rows * b.ld), NAN);
    ref::paged_attention(b.q.data(), b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.cache.view, b.p, r.data(), b.ld);
    ASSERT_LT(max_err(b, r, want), 2e-5) << "ref case " << ci;
    std::vector<double> rd(r.begin(), r.end());
    for (KernelIsa isa : isas_)
      for (int n : {1, 2, 3}) {
        const std::vector<float> got = run_team(isa, n, b, b.seqs);
        EXPECT_LT(max_err(b, got, naive_held(b, isa)), held_bound(b, isa))
            << kernel_isa_name(isa) << " team " << n << " case " << ci;
        if (!attention_uses_bf16_products(isa, b.cache.elem)) {  // the reference is fp32 throughout
          EXPECT_LT(max_err(b, got, rd), 2e-5) << kernel_isa_name(isa) << " team " << n << " case " << ci;
        }
      }
  }
}

// A row's bits do not depend on the team's size or on the sequences beside it.
TEST_P(SplitKV, BitsEqualForEveryTeamSizeAndBatch) {
  // Sequence 0 is the one compared: 1-KV-head (MQA) and GQA decoding rows of 1800 keys, and a
  // windowed one; the others only fill the batch (short, long, prefill).
  const std::vector<Case> shapes = {
      {8, 1, 64, 16, {{1800, 1}, {100, 1}, {3000, 1}, {0, 9}, {700, 2}, {40, 1}, {1200, 1}, {5, 3}, {900, 1},
                      {2500, 1}, {60, 4}, {333, 1}}},
      {8, 2, 48, 16, {{1799, 2}, {100, 1}, {3000, 1}, {0, 9}, {700, 2}, {40, 1}, {1200, 1}, {5, 3}, {900, 1},
                      {2500, 1}, {60, 4}, {333, 1}}, 1000},
  };
  for (size_t ci = 0; ci < shapes.size(); ++ci) {
    const Built b = build(shapes[ci], elem(), uint32_t(1300 + ci));
    const AttnSeq& s0 = b.seqs[0];
    const size_t bytes = size_t(s0.n_q * b.ld) * sizeof(float);
    for (KernelIsa isa : isas_) {
      const std::vector<AttnSeq> alone = {s0};
      const std::vector<float> want = run_team(isa, 1, b, alone);
      for (int n : {1, 2, 3}) {
        const std::vector<float> solo = run_team(isa, n, b, alone);
        EXPECT_EQ(0, std::memcmp(solo.data(), want.data(), bytes)) << kernel_isa_name(isa) << " alone, team " << n;
        // Two and three sequences: few jobs, so the driver splits the keys into chunk jobs when
        // they do not divide over the team (alone: always).
        for (size_t m : {2, 3}) {
          const std::vector<AttnSeq> few(b.seqs.begin(), b.seqs.begin() + int64_t(m));
          const std::vector<float> small = run_team(isa, n, b, few);
          EXPECT_EQ(0, std::memcmp(small.data(), want.data(), bytes))
              << kernel_isa_name(isa) << " batch " << m << ", team " << n;
        }
        // All twelve: enough jobs that each row runs whole in one job.
        const std::vector<float> all = run_team(isa, n, b, b.seqs);
        EXPECT_EQ(0, std::memcmp(all.data(), want.data(), bytes)) << kernel_isa_name(isa) << " batch 12, team " << n;
        // The batch's other rows are right too.
        EXPECT_LT(max_err(b, all, naive_held(b, isa)), held_bound(b, isa)) << kernel_isa_name(isa) << " team " << n;
      }
    }
  }
}

// Prefill rows share their job's walk over the pages (kernels/attention_impl.h, kRows), each
// with its own chunks and merges: every row of these extends has the bits it gets decoded alone.
TEST_P(SplitKV, EveryRowOfALongExtendEqualsItsRowAlone) {
  const std::vector<Case> shapes = {
      {8, 2, 64, 16, {{480, 70}}},           // rows from 481 to 550 keys: across the split at 512
      {4, 1, 40, 7, {{1000, 37}}, 600},      // MQA, 7-key pages cut by the chunks, a window of 600
      {16, 1, 72, 16, {{700, 21}}, 0, 64, true},  // MLA latent
      // DeepSeek's latent width (the AVX-512 BF16 level scores such rows of a page from one base),
      // alone in a job of its own and, past 2048 keys, in key chunks on a team of two.
      {16, 1, 576, 16, {{700, 3}}, 0, 512, true},
      {16, 1, 576, 16, {{2100, 2}}, 0, 512, true},
  };
  for (size_t ci = 0; ci < shapes.size(); ++ci) {
    const Built b = build(shapes[ci], elem(), uint32_t(1500 + ci));
    const AttnSeq& s0 = b.seqs[0];
    for (KernelIsa isa : isas_)
      for (int n : {1, 2}) {
        const std::vector<float> all = run_team(isa, n, b, b.seqs);
        EXPECT_LT(max_err(b, all, naive_held(b, isa)), held_bound(b, isa))
            << kernel_isa_name(isa) << " team " << n << " case " << ci;
        for (int64_t i = 0; i < s0.n_q; ++i) {
          const std::vector<AttnSeq> one = {AttnSeq{i, 1, s0.pos0 + i, s0.pages}};
          const std::vector<float> alone = run_team(isa, n, b, one);
          ASSERT_EQ(0, std::memcmp(&alone[size_t(i * b.ld)], &all[size_t(i * b.ld)], size_t(b.ld) * sizeof(float)))
              << kernel_isa_name(isa) << " team " << n << " case " << ci << " row " << i;
        }
      }
  }
}

// The AVX-512 BF16 level has two attention kernels over a bf16 / int8 / fp8 cache, picked by
// kernels::bf16_fma_products() (kernels/isa.h: fp32 FMAs by default on Intel, vdpbf16ps on AMD);
// the tests above run whichever is this CPU's default, so this one runs both: each within its
// float64 bound, a prefill row with the bits it gets alone, and the FMA choice the AVX-512
// level's bits exactly (the same kernels). Where the CPU has no AVX-512 BF16, the best vector
// level runs both settings, which do not apply to it: the same bits either way.
TEST(Bf16Products, BothAttentionKernelsOfTheBf16Level) {
  const std::vector<KernelIsa> vec = test::isas_in(test::IsaGroup::Vector);
  const KernelIsa isa = vec.back();
  const std::vector<Case> shapes = {long_cases()[0], long_cases()[1], {8, 2, 64, 16, {{480, 40}}}};
  for (KVElem e : {KVElem::kBF16, KVElem::kInt8, KVElem::kFp8E4M3})
    for (size_t ci = 0; ci < shapes.size(); ++ci) {
      const Built b = build(shapes[ci], e, uint32_t(1700 + ci));
      std::vector<float> by_choice[2];
      for (bool fma : {false, true}) {
        const test::Bf16ProductsScope products(fma);
        const std::string what = std::string(kernel_isa_name(isa)) + (fma ? " fma" : " dot") + " elem " +
                                 std::to_string(int(e)) + " case " + std::to_string(ci);
        EXPECT_EQ(attention_uses_bf16_products(isa, e), isa == KernelIsa::Avx512Bf16 && !fma) << what;
        const std::vector<float> all = run_team(isa, 2, b, b.seqs);
        EXPECT_LT(max_err(b, all, naive_held(b, isa)), held_bound(b, isa)) << what;
        const AttnSeq& s0 = b.seqs[0];
        for (int64_t i = 0; i < s0.n_q; i += 7) {
          const std::vector<AttnSeq> one = {AttnSeq{s0.q_row + i, 1, s0.pos0 + i, s0.pages}};
          const std::vector<float> alone = run_team(isa, 1, b, one);
          ASSERT_EQ(0, std::memcmp(&alone[size_t((s0.q_row + i) * b.ld)], &all[size_t((s0.q_row + i) * b.ld)],
                                   size_t(b.ld) * sizeof(float)))
              << what << " row " << i;
        }
        if (fma && kernel_isa_supported(KernelIsa::Avx512)) {
          const std::vector<float> avx512 = run_team(KernelIsa::Avx512, 2, b, b.seqs);
          EXPECT_EQ(0, std::memcmp(all.data(), avx512.data(), all.size() * sizeof(float))) << what;
        }
        by_choice[fma] = all;
      }
      // The two kernels differ where the level has both (the test would not notice a choice ignored).
      if (isa == KernelIsa::Avx512Bf16) {
        EXPECT_NE(0, std::memcmp(by_choice[0].data(), by_choice[1].data(), by_choice[0].size() * sizeof(float)))
            << "case " << ci;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Elems, SplitKV, elems_by_isa_group({KVElem::kF32, KVElem::kBF16, KVElem::kInt8, KVElem::kFp8E4M3}),
                         elem_isa_name);

}  // namespace
}  // namespace dpserve
