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

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")
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

// G rows of n floats (row g at x + g * ldx) rounded to bf16 (round to nearest even), as 32-bit
// pairs: out[g * np + p] holds elements 2p and 2p + 1 of row g (np = (n + 1) / 2; the element past
// an odd n is zero). A row's query heads (pairs of elements) and a page's softmax weights (pairs
// of keys) both take this form.
void pack_bf16_pairs(const float* x, int64_t ldx, int64_t G, int64_t n, uint32_t* out) {
  const int64_t np = (n + 1) / 2;
  for (int64_t g = 0; g < G; ++g) {
    uint16_t* row = reinterpret_cast<uint16_t*>(out + g * np);
    row[2 * np - 1] = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      _mm256_mask_storeu_epi16(row + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + g * ldx + i)));
    }
  }
}

// Scores of NG heads against the packed keys. Lane j of head g's score is (even pairs) + (odd
// pairs), each a sum over p = 0, 2, 4, ... (1, 3, 5, ...) in order of pair p of the query and of
// key j, whatever NG or the number of keys: two chains per head, so vdpbf16ps's latency is
// hidden behind the other heads' products.
template <int NG>
void scores_packed(const uint32_t* qb, int64_t pairs, const uint32_t* kp, int64_t nb, float scale, float* out,
                   int64_t ldo, float* mx) {
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
  store_scores<NG>(a0, a1, nb, scale, out, ldo, mx);
}

// acc[h] += sum_j p[h][j] v[j] for NH heads at once, two keys per vdpbf16ps: the value rows of a
// key pair are interleaved element by element (vpermt2w), so lane i of a sum is element i of
// the value; lane i of head h takes key pairs 0, 1, ... in order, whatever NH.
template <int NH, class T>
void axpy_packed(float* acc, int64_t lda, const T* v, int64_t ldv, const uint32_t* pb, int64_t np, int64_t n,
                 int64_t d) {
  alignas(64) static const uint16_t kLo[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                               8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                               24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i lo = _mm512_load_si512(kLo), hi = _mm512_load_si512(kHi);
  for (int64_t i = 0; i < d; i += 32) {
    const int64_t e = std::min<int64_t>(32, d - i);
    const __mmask16 m0 = head_mask(d, i), m1 = e > 16 ? head_mask(d, i + 16) : __mmask16(0);
    __m512 a[NH][2];
    for (int h = 0; h < NH; ++h) {
      a[h][0] = _mm512_maskz_loadu_ps(m0, acc + h * lda + i);
      a[h][1] = _mm512_maskz_loadu_ps(m1, acc + h * lda + i + 16);
    }
    for (int64_t jp = 0; jp < np; ++jp) {
      const __m512i r0 = load32_bf16(v + 2 * jp * ldv + i, e);
      const __m512i r1 = 2 * jp + 1 < n ? load32_bf16(v + (2 * jp + 1) * ldv + i, e) : _mm512_setzero_si512();
      const __m512bh x0 = (__m512bh)_mm512_permutex2var_epi16(r0, lo, r1);
      const __m512bh x1 = (__m512bh)_mm512_permutex2var_epi16(r0, hi, r1);
#pragma GCC unroll 8
      for (int h = 0; h < NH; ++h) {
        const __m512bh w = (__m512bh)_mm512_set1_epi32(int(pb[h * np + jp]));
        a[h][0] = _mm512_dpbf16_ps(a[h][0], x0, w);
        a[h][1] = _mm512_dpbf16_ps(a[h][1], x1, w);
      }
    }
    for (int h = 0; h < NH; ++h) {
      _mm512_mask_storeu_ps(acc + h * lda + i, m0, a[h][0]);
      _mm512_mask_storeu_ps(acc + h * lda + i + 16, m1, a[h][1]);
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
  const void* k = nullptr;  // keys packed in kbuf: their address, count and stride
  int64_t k_n = 0, k_ld = 0;
  std::vector<uint32_t> kbuf;
  std::vector<uint32_t> pb;
};
thread_local JobCache cache;

struct Bf16Ops : Avx512Ops {
  static void begin_job() {
    Avx512Ops::begin_job();
    cache.n_q = 0;
    cache.k = nullptr;
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
    pack_bf16_pairs(q, ldq, G, d, out);
    return out;
  }

  template <class T>
  static void scores_heads(const float* q, int64_t ldq, int64_t G, const T* k, int64_t ldk, int64_t n, int64_t d,
                           float scale, float* out, int64_t ldo, float* mx) {
    if constexpr (std::is_same_v<T, float>) {
      Avx512Ops::scores_heads<T>(q, ldq, G, k, ldk, n, d, scale, out, ldo, mx);
    } else {
      const int64_t pairs = (d + 1) / 2;
      const uint32_t* qb = queries(q, ldq, G, d);
      // Rows of 16 lanes, 64-byte aligned (the vector's storage plus up to 15 lanes of slack).
      const int64_t blocks = (n + 15) / 16;
      if (int64_t(cache.kbuf.size()) < blocks * pairs * 16 + 16) {
        cache.kbuf.resize(size_t(blocks * pairs * 16 + 16));
        cache.k = nullptr;
      }
      uint32_t* kp = cache.kbuf.data() + (16 - (reinterpret_cast<uintptr_t>(cache.kbuf.data()) / 4) % 16) % 16;
      const bool packed = cache.k == k && cache.k_n == n && cache.k_ld == ldk;
      std::fill(mx, mx + G, -std::numeric_limits<float>::infinity());
      for (int64_t j0 = 0, b = 0; j0 < n; j0 += 16, ++b) {
        const int64_t nb = std::min<int64_t>(16, n - j0);
        uint32_t* kb = kp + b * pairs * 16;
        if (!packed) pack_key_pairs(k + j0 * ldk, ldk, nb, d, kb);
        head_groups<8>(G, [&](auto NG, int64_t g) {
          scores_packed<NG>(qb + g * pairs, pairs, kb, nb, scale, out + g * ldo + j0, ldo, mx + g);
        });
      }
      cache.k = k;
      cache.k_n = n;
      cache.k_ld = ldk;
    }
  }

  template <class T>
  static void axpy_heads(float* acc, int64_t lda, int64_t G, const T* v, int64_t ldv, const float* p, int64_t ldp,
                         int64_t n, int64_t d) {
    if constexpr (std::is_same_v<T, float>) {
      Avx512Ops::axpy_heads<T>(acc, lda, G, v, ldv, p, ldp, n, d);
    } else {
      const int64_t np = (n + 1) / 2;
      if (int64_t(cache.pb.size()) < G * np) cache.pb.resize(size_t(G * np));
      uint32_t* pb = cache.pb.data();
      pack_bf16_pairs(p, ldp, G, n, pb);
      head_groups<8>(G, [&](auto NH, int64_t g) { axpy_packed<NH>(acc + g * lda, lda, v, ldv, pb + g * np, np, n, d); });
    }
  }
};

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) { attention_job_impl<Bf16Ops>(c, j, parts); }

}  // namespace dpserve::kernels::avx512bf16

#pragma GCC diagnostic pop
#pragma GCC pop_options
