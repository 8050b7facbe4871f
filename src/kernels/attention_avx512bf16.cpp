// AVX-512 BF16 attention: the AVX-512 primitives, except that over a bf16, int8 or fp8 KV cache the
// products are vdpbf16ps, two elements per lane: as the AVX-512 scores, a page's keys are
// transposed once and every query head multiplies them as a small matrix product, here in
// pairs-by-keys rows (16 keys, 32 elements per instruction); the softmax weights, rounded to
// bf16, weigh two keys' values per instruction. Where one core runs one 512-bit FMA per cycle
// (Zen 5 here) this doubles the products per cycle over fp32. The query is rounded to bf16 for the
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
#ifdef __clang__  // clang ignores GCC's target pragma (the fuzz build compiles these files with clang)
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

// Up to 32 cached elements (the first e of p) as bf16, zero past e: bf16 as stored; int8 codes
// converted exactly (every integer of 8 bits is a bf16).
__m512i load32_bf16(const bf16_t* p, int64_t e) {
  return _mm512_maskz_loadu_epi16(e >= 32 ? ~__mmask32(0) : __mmask32((uint64_t(1) << e) - 1), p);
}
__m512i load32_bf16(const int8_t* p, int64_t e) {
  const __m512i w = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(e >= 32 ? ~__mmask32(0) : __mmask32((uint64_t(1) << e) - 1), p));
  const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(w, 0)));
  const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(w, 1)));
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // elements 0-15 from lo, 16-31 from hi
}
// fp8 codes are bf16 exactly too (at most 4 significant bits, exponents well inside bf16's): the
// bf16 of each of the 128 magnitudes, looked up 32 codes at a time by two 64-entry word permutes
// (code bit 6 picks one), the sign bit moved to bf16's. Subnormal codes come out exact as well.
// Built at compile time (a function-local static would put a guard check in every load, and keep
// the load from being inlined into the loops).
template <class F8>
constexpr std::array<uint16_t, 128> fp8_bf16_bits() {
  std::array<uint16_t, 128> r{};
  for (int c = 0; c < 128; ++c)  // exact in bf16, so truncating the fp32 bits is the conversion
    r[size_t(c)] = uint16_t(std::bit_cast<uint32_t>(fp8_to_f32(F8{uint8_t(c)})) >> 16);
  return r;
}
alignas(64) constexpr std::array<uint16_t, 128> kE4M3Bf16 = fp8_bf16_bits<fp8_e4m3_t>();
alignas(64) constexpr std::array<uint16_t, 128> kE5M2Bf16 = fp8_bf16_bits<fp8_e5m2_t>();
template <class F8>
  requires(std::is_same_v<F8, fp8_e4m3_t> || std::is_same_v<F8, fp8_e5m2_t>)
[[gnu::always_inline]] inline __m512i load32_bf16(const F8* p, int64_t e) {
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(e >= 32 ? ~__mmask32(0) : __mmask32((uint64_t(1) << e) - 1), p));
  const uint16_t* t = std::is_same_v<F8, fp8_e4m3_t> ? kE4M3Bf16.data() : kE5M2Bf16.data();
  const __m512i lo = _mm512_permutex2var_epi16(_mm512_load_si512(t), w, _mm512_load_si512(t + 32));
  const __m512i hi = _mm512_permutex2var_epi16(_mm512_load_si512(t + 64), w, _mm512_load_si512(t + 96));
  const __m512i mag = _mm512_mask_mov_epi16(lo, _mm512_test_epi16_mask(w, _mm512_set1_epi16(0x40)), hi);
  // mag | ((code << 8) & 0x8000)
  return _mm512_ternarylogic_epi32(mag, _mm512_slli_epi16(w, 8), _mm512_set1_epi16(int16_t(0x8000)), 0xF8);
}

// Keys [0, nb) (nb <= 16) as vdpbf16ps takes them: row p holds elements 2p and 2p + 1 of key j in
// 32-bit lane j; lanes of keys past nb and the element past an odd width are zero.
template <class T>
void pack_key_pairs(const T* k, int64_t ldk, int64_t nb, int64_t d, uint32_t* kp) {
  const int64_t pairs = (d + 1) / 2;
  for (int64_t c = 0; c < pairs; c += 16) {
    const int64_t elems = std::min<int64_t>(32, d - 2 * c);
    __m512i r[16];
    for (int j = 0; j < 16; ++j) r[j] = j < nb ? load32_bf16(k + j * ldk + 2 * c, elems) : _mm512_setzero_si512();
    transpose16(r);
    const int64_t np = std::min<int64_t>(16, pairs - c);
    for (int64_t p = 0; p < np; ++p) _mm512_store_si512(kp + (c + p) * 16, r[p]);
  }
}

// G rows of n floats (row g at x + g * ldx), each times s[i] if kScaled (a page's softmax weights
// times the value rows' int8 / fp8 scales), rounded to bf16 (round to nearest even), as 32-bit
// pairs: out[g * ldo + p] holds elements 2p and 2p + 1 of row g for p < (n + 1) / 2 (the element
// past an odd n is zero). A row's query heads (pairs of elements) and a page's softmax weights
// (pairs of keys) both take this form.
template <bool kScaled = false>
void pack_bf16_pairs(const float* x, int64_t ldx, int64_t G, int64_t n, uint32_t* out, int64_t ldo,
                     const float* s = nullptr) {
  const int64_t np = (n + 1) / 2;
  for (int64_t g = 0; g < G; ++g) {
    uint16_t* row = reinterpret_cast<uint16_t*>(out + g * ldo);
    row[2 * np - 1] = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      __m512 v = _mm512_maskz_loadu_ps(m, x + g * ldx + i);
      if constexpr (kScaled) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, s + i));
      const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
      if (m == __mmask16(0xffff)) _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + i), h);  // store16's reason
      else _mm256_mask_storeu_epi16(row + i, m, h);
    }
  }
}

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

// The interleave that lets vdpbf16ps weigh two value rows at once: 32-bit lane i of `lo` holds
// element i of rows a and b (a's in the low half), of `hi` element 16 + i.
alignas(64) constexpr uint16_t kPairLo[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                              8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
alignas(64) constexpr uint16_t kPairHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                              24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};

// Columns of a packed value pair row: the value width rounded up to whole 32-element blocks.
constexpr int64_t value_pair_cols(int64_t d) { return (d + 31) / 32 * 32; }

// Value rows 2 jp and 2 jp + 1 (the second zero past n), elements [i, i + e), as vdpbf16ps weighs
// two keys at once: lane l of x0 holds element i + l of both rows, lane l of x1 element i + 16 + l.
// lo, hi: kPairLo, kPairHi (loaded once by the caller, outside its loops).
template <class T>
[[gnu::always_inline]] inline void value_pair(const T* v, int64_t ldv, int64_t n, int64_t jp, int64_t i, int64_t e,
                                              __m512i lo, __m512i hi, __m512i& x0, __m512i& x1) {
  const __m512i r0 = load32_bf16(v + 2 * jp * ldv + i, e);
  const __m512i r1 = 2 * jp + 1 < n ? load32_bf16(v + (2 * jp + 1) * ldv + i, e) : _mm512_setzero_si512();
  x0 = _mm512_permutex2var_epi16(r0, lo, r1);
  x1 = _mm512_permutex2var_epi16(r0, hi, r1);
}

// Value rows [0, n) as value_pair gives them, stored: pair row jp holds x0 then x1 of each
// 32-element block (value_pair_cols(d) lanes at out + jp * cols), lanes past d zero. Rows of a
// prefill job take turns over the same step, so an int8 / fp8 page is converted and interleaved
// once per job instead of once per row (their prefill attention 1.08-1.18x, AMD EPYC Zen 5); a
// job of one row converts as it goes (storing the pairs cost decode 6-10 %).
template <class T>
void pack_value_pairs(const T* v, int64_t ldv, int64_t n, int64_t d, uint32_t* out) {
  const __m512i lo = _mm512_load_si512(kPairLo), hi = _mm512_load_si512(kPairHi);
  const int64_t cols = value_pair_cols(d);
  for (int64_t jp = 0; jp < (n + 1) / 2; ++jp)
    for (int64_t i = 0; i < d; i += 32) {
      __m512i x0, x1;
      value_pair(v, ldv, n, jp, i, std::min<int64_t>(32, d - i), lo, hi, x0, x1);
      _mm512_store_si512(out + jp * cols + i, x0);
      _mm512_store_si512(out + jp * cols + i + 16, x1);
    }
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
