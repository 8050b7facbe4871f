// AVX-512 BF16 attention: the AVX-512 primitives, except that over a bf16, int8 or fp8 KV cache the
// products are vdpbf16ps, two elements per lane: as the AVX-512 scores, a page's keys are
// transposed once and every query head multiplies them as a small matrix product, here in
// pairs-by-keys rows (16 keys, 32 elements per instruction); the softmax weights, rounded to
// bf16, weigh two keys' values per instruction. Where one core runs one 512-bit FMA per cycle
// (Zen 5 here) this doubles the products per cycle over fp32; Intel cores issue vdpbf16ps at a
// quarter of their FMAs' rate, so there the level runs the AVX-512 kernels instead
// (kernels::bf16_fma_products(), kernels/isa.h). The query is rounded to bf16 for the
// product (the keys already are; int8 and fp8 codes are bf16 exactly, their scales apply outside); every score and output element is still one
// fixed sequence of operations on its own row, so a row's bits do not depend on the batch, the
// heads beside it or the team. An fp32 cache takes the AVX-512 path unchanged.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_exp.h"
#include "kernels/vec_math.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2"))), apply_to = function)
#endif
// GCC 12's unpack / shuffle / extract intrinsics pass _mm512_undefined_*() as the unused merge
// source, which -Wuninitialized reports once they are inlined here: nothing is read from it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"

// Inside the target region, so the shared algorithm is compiled for this ISA.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx512bf16 {

namespace {

#include "kernels/attention_avx512_ops.h"

#include "kernels/attention_bf16_pairs.h"

// Scores of NG heads against the packed keys. Lane j of head g's score is (even pairs) + (odd
// pairs), each a sum over p = 0, 2, 4, ... (1, 3, 5, ...) in order of pair p of the query and of
// key j, whatever NG or the number of keys: two chains per head, so vdpbf16ps's latency is
// hidden behind the other heads' products.
template <int NG, bool kScaled>
void scores_packed(const uint32_t* qb, int64_t pairs, const uint32_t* kp, int64_t nb, float scale, float* out,
                   int64_t ldo, float* mx, const float* ks) {
  __m512 a0[NG], a1[NG];
  for (int g = 0; g < NG; ++g) a0[g] = a1[g] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 2 <= pairs; p += 2) {
    const __m512bh k0 = (__m512bh)_mm512_load_si512(kp + p * 16);
    const __m512bh k1 = (__m512bh)_mm512_load_si512(kp + (p + 1) * 16);
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) {
      a0[g] = _mm512_dpbf16_ps(a0[g], (__m512bh)_mm512_set1_epi32(int(qb[g * pairs + p])), k0);
      a1[g] = _mm512_dpbf16_ps(a1[g], (__m512bh)_mm512_set1_epi32(int(qb[g * pairs + p + 1])), k1);
    }
  }
  if (p < pairs) {
    const __m512bh k0 = (__m512bh)_mm512_load_si512(kp + p * 16);
    for (int g = 0; g < NG; ++g)
      a0[g] = _mm512_dpbf16_ps(a0[g], (__m512bh)_mm512_set1_epi32(int(qb[g * pairs + p])), k0);
  }
  store_scores<NG, kScaled>(a0, a1, nb, scale, out, ldo, mx, ks);
}

// scores_packed for two blocks of packed keys at once (kb[0] with nb[0] keys, scores to out[0]; kb[1]
// likewise): each query pair loaded once feeds both blocks, so a product waits on fewer loads (one
// block took a broadcast per product). Every lane's sums are scores_packed's, in its order.
template <int NG, bool kScaled>
void scores_packed2(const uint32_t* qb, int64_t pairs, const uint32_t* const kb[2], const int64_t nb[2], float scale,
                    float* const out[2], int64_t ldo, const float* const ks[2]) {
  __m512 a0[2][NG], a1[2][NG];
  for (int b = 0; b < 2; ++b)
    for (int g = 0; g < NG; ++g) a0[b][g] = a1[b][g] = _mm512_setzero_ps();
  const uint32_t* ka = kb[0];
  const uint32_t* kc = kb[1];
  int64_t p = 0;
  for (; p + 2 <= pairs; p += 2) {
    const __m512bh x0 = (__m512bh)_mm512_load_si512(ka + p * 16), x1 = (__m512bh)_mm512_load_si512(ka + (p + 1) * 16);
    const __m512bh y0 = (__m512bh)_mm512_load_si512(kc + p * 16), y1 = (__m512bh)_mm512_load_si512(kc + (p + 1) * 16);
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) {
      const __m512bh q0 = (__m512bh)_mm512_set1_epi32(int(qb[g * pairs + p]));
      const __m512bh q1 = (__m512bh)_mm512_set1_epi32(int(qb[g * pairs + p + 1]));
      a0[0][g] = _mm512_dpbf16_ps(a0[0][g], q0, x0);
      a0[1][g] = _mm512_dpbf16_ps(a0[1][g], q0, y0);
      a1[0][g] = _mm512_dpbf16_ps(a1[0][g], q1, x1);
      a1[1][g] = _mm512_dpbf16_ps(a1[1][g], q1, y1);
    }
  }
  if (p < pairs) {
    const __m512bh x0 = (__m512bh)_mm512_load_si512(ka + p * 16), y0 = (__m512bh)_mm512_load_si512(kc + p * 16);
    for (int g = 0; g < NG; ++g) {
      const __m512bh q0 = (__m512bh)_mm512_set1_epi32(int(qb[g * pairs + p]));
      a0[0][g] = _mm512_dpbf16_ps(a0[0][g], q0, x0);
      a0[1][g] = _mm512_dpbf16_ps(a0[1][g], q0, y0);
    }
  }
  for (int b = 0; b < 2; ++b) store_scores<NG, kScaled>(a0[b], a1[b], nb[b], scale, out[b], ldo, nullptr, ks[b]);
}

// acc[h] += sum_j p[h][j] v[j] for NH heads at once, two keys per vdpbf16ps (value_pair): lane i
// of a sum is element i of the value; lane i of head h takes the runs in order, and in each its
// key pairs (0, 1), (2, 3), ... in order (an odd run's last key with zero), whatever NH. The sums
// stay in registers over all the runs. Values: packed (kPacked: vp[r], pack_value_pairs) or as
// stored, converted here: the same vectors either way. pb: the weights as pairs, run r's at column
// pcol[r] of head h's row (h * ldb).
template <int NH, bool kPacked, class T>
void axpy_packed(float* acc, int64_t lda, const PageRun<T>* runs, const uint32_t* const* vp, int64_t n_runs,
                 const int64_t* pcol, const uint32_t* pb, int64_t ldb, int64_t d) {
  const __m512i lo = _mm512_load_si512(kPairLo), hi = _mm512_load_si512(kPairHi);
  const int64_t cols = value_pair_cols(d);
  for (int64_t i = 0; i < d; i += 32) {
    const int64_t e = std::min<int64_t>(32, d - i);
    const __mmask16 m0 = head_mask(d, i), m1 = e > 16 ? head_mask(d, i + 16) : __mmask16(0);
    __m512 a[NH][2];
    for (int h = 0; h < NH; ++h) {
      a[h][0] = _mm512_maskz_loadu_ps(m0, acc + h * lda + i);
      a[h][1] = _mm512_maskz_loadu_ps(m1, acc + h * lda + i + 16);
    }
    for (int64_t r = 0; r < n_runs; ++r) {
      if (i == 0) prefetch_ahead(runs[r]);
      const uint32_t* w = pb + pcol[r];
      const T* v = runs[r].rows;
      const uint32_t* vr = kPacked ? vp[r] + i : nullptr;
      const int64_t ldv = runs[r].ld, n = runs[r].n, np = (n + 1) / 2;
      for (int64_t jp = 0; jp < np; ++jp) {
        __m512i x0, x1;
        if constexpr (kPacked) {
          x0 = _mm512_load_si512(vr + jp * cols);
          x1 = _mm512_load_si512(vr + jp * cols + 16);
        } else {
          value_pair(v, ldv, n, jp, i, e, lo, hi, x0, x1);
        }
#pragma GCC unroll 8
        for (int h = 0; h < NH; ++h) {
          const __m512bh wv = (__m512bh)_mm512_set1_epi32(int(w[h * ldb + jp]));
          a[h][0] = _mm512_dpbf16_ps(a[h][0], (__m512bh)x0, wv);
          a[h][1] = _mm512_dpbf16_ps(a[h][1], (__m512bh)x1, wv);
        }
      }
    }
    for (int h = 0; h < NH; ++h) {
      store16(acc + h * lda + i, m0, a[h][0]);
      store16(acc + h * lda + i + 16, m1, a[h][1]);
    }
  }
}

// What a job has already converted: rows of a prefill block take turns page by page, so a row's
// query (and a page's keys, for the next row) come back while the job lasts. Cleared at the
// start of every job: the same addresses hold other values in the next call.
struct JobCache {
  static constexpr int kRows = 32;
  const float* q[kRows];
  int64_t n_q = 0;
  std::vector<uint32_t> qb;  // kRows slots of G * pairs
  int64_t slot = 0;          // pairs * G of one slot
  PackedKeyCache<uint32_t> keys;    // pairs-by-keys rows of the job's last pages
  PackedKeyCache<uint32_t> values;  // their values in pairs (pack_value_pairs)
  bool pack_values = false;         // the job has more than one row
  std::vector<uint32_t> pb;
};
thread_local JobCache cache;

struct Bf16Ops : Avx512Ops {
  static void begin_job(int64_t rows) {
    Avx512Ops::begin_job(rows);
    cache.pack_values = rows > 1;
    cache.n_q = 0;
    cache.keys.forget();
    cache.values.forget();
  }

  // The bf16 pairs of a row's G query heads, converted once per job.
  static const uint32_t* queries(const float* q, int64_t ldq, int64_t G, int64_t d) {
    const int64_t pairs = (d + 1) / 2, slot = G * pairs;
    if (cache.slot != slot) {
      cache.slot = slot;
      cache.n_q = 0;
      cache.qb.resize(size_t(JobCache::kRows * slot));
    }
    for (int64_t i = 0; i < cache.n_q; ++i)
      if (cache.q[i] == q) return cache.qb.data() + i * slot;
    if (cache.n_q == JobCache::kRows) cache.n_q = 0;
    uint32_t* out = cache.qb.data() + cache.n_q * slot;
    cache.q[cache.n_q++] = q;
    pack_bf16_pairs(q, ldq, G, d, out, (d + 1) / 2);
    return out;
  }

  // A step's scores: every page's keys packed (or found packed), then the blocks of 16 keys
  // scored two at a time, times the keys' scales (int8 / fp8) as they are stored.
  template <class T>
  static void scores_runs(const float* q, int64_t ldq, int64_t G, const PageRun<T>* runs, const float* const* scales,
                          int64_t n_runs, int64_t d, float scale, float* out, int64_t ldo) {
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t r = 0; r < n_runs; ++r) {
        prefetch_ahead(runs[r]);
        Avx512Ops::scores_heads<T>(q, ldq, G, runs[r].rows, runs[r].ld, runs[r].n, d, scale, out + runs[r].off, ldo,
                                   nullptr);
      }
    } else {
      const int64_t pairs = (d + 1) / 2;
      const uint32_t* qb = queries(q, ldq, G, d);
      struct Block {
        const uint32_t* k;
        int64_t n;
        float* out;
        const float* ks;
      };
      thread_local std::vector<Block> blocks;
      blocks.clear();
      cache.keys.begin_call(n_runs);
      for (int64_t r = 0; r < n_runs; ++r) {
        const PageRun<T>& run = runs[r];
        prefetch_ahead(run);
        bool packed;
        uint32_t* kp = cache.keys.find(run.rows, run.n, run.ld, d, (run.n + 15) / 16 * pairs * 16, packed);
        for (int64_t j0 = 0, b = 0; j0 < run.n; j0 += 16, ++b) {
          const int64_t nb = std::min<int64_t>(16, run.n - j0);
          if (!packed) pack_key_pairs(run.rows + j0 * run.ld, run.ld, nb, d, kp + b * pairs * 16);
          blocks.push_back({kp + b * pairs * 16, nb, out + run.off + j0, scales ? scales[r] + j0 : nullptr});
        }
      }
      size_t b = 0;
      for (; b + 2 <= blocks.size(); b += 2) {
        const uint32_t* kb[2] = {blocks[b].k, blocks[b + 1].k};
        const int64_t nb[2] = {blocks[b].n, blocks[b + 1].n};
        const float* const ks[2] = {blocks[b].ks, blocks[b + 1].ks};
        head_groups<4>(G, [&](auto NG, int64_t g) {
          float* const o[2] = {blocks[b].out + g * ldo, blocks[b + 1].out + g * ldo};
          scores_packed2<NG, kv_scaled_v<T>>(qb + g * pairs, pairs, kb, nb, scale, o, ldo, ks);
        });
      }
      if (b < blocks.size())
        head_groups<8>(G, [&](auto NG, int64_t g) {
          scores_packed<NG, kv_scaled_v<T>>(qb + g * pairs, pairs, blocks[b].k, blocks[b].n, scale,
                                            blocks[b].out + g * ldo, ldo, nullptr, blocks[b].ks);
        });
    }
  }

  // A step's weighted values, each weight times its value row's scale (int8 / fp8) as the
  // weights are rounded to bf16.
  template <class T>
  static void axpy_runs(float* acc, int64_t lda, int64_t G, const PageRun<T>* runs, const float* const* scales,
                        int64_t n_runs, const float* p, int64_t ldp, int64_t d) {
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t r = 0; r < n_runs; ++r) {
        prefetch_ahead(runs[r]);
        Avx512Ops::axpy_heads<T>(acc, lda, G, runs[r].rows, runs[r].ld, p + runs[r].off, ldp, runs[r].n, d);
      }
    } else {
      // Each run's weights as bf16 pairs, the runs side by side in a head's row.
      thread_local std::vector<int64_t> pcol;
      pcol.resize(size_t(n_runs));
      int64_t ldb = 0;
      for (int64_t r = 0; r < n_runs; ++r) pcol[size_t(r)] = ldb, ldb += (runs[r].n + 1) / 2;
      if (int64_t(cache.pb.size()) < G * ldb) cache.pb.resize(size_t(G * ldb));
      uint32_t* pb = cache.pb.data();
      for (int64_t r = 0; r < n_runs; ++r)
        pack_bf16_pairs<kv_scaled_v<T>>(p + runs[r].off, ldp, G, runs[r].n, pb + pcol[size_t(r)], ldb,
                                        kv_scaled_v<T> ? scales[r] : nullptr);
      // int8 / fp8 values in a job of several rows: each run's values in pairs, packed by the first
      // row to take the step. (bf16 values need no conversion, only the interleave: storing them
      // cost bf16 prefill 1-3 %.)
      if constexpr (!std::is_same_v<T, bf16_t>) {
        if (cache.pack_values) {
          thread_local std::vector<const uint32_t*> vp;
          vp.resize(size_t(n_runs));
          cache.values.begin_call(n_runs);
          for (int64_t r = 0; r < n_runs; ++r) {
            const PageRun<T>& run = runs[r];
            bool packed;
            uint32_t* out = cache.values.find(run.rows, run.n, run.ld, d, (run.n + 1) / 2 * value_pair_cols(d), packed);
            if (!packed) pack_value_pairs(run.rows, run.ld, run.n, d, out);
            vp[size_t(r)] = out;
          }
          head_groups<8>(G, [&](auto NH, int64_t g) {
            axpy_packed<NH, true, T>(acc + g * lda, lda, runs, vp.data(), n_runs, pcol.data(), pb + g * ldb, ldb, d);
          });
          return;
        }
      }
      head_groups<8>(G, [&](auto NH, int64_t g) {
        axpy_packed<NH, false, T>(acc + g * lda, lda, runs, nullptr, n_runs, pcol.data(), pb + g * ldb, ldb, d);
      });
    }
  }
};

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) { attention_job_impl<Bf16Ops>(c, j, parts); }

}  // namespace dpserve::kernels::avx512bf16

#pragma GCC diagnostic pop
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
