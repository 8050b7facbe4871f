// AVX2 attention primitives: scores of bf16 / int8 / fp8 keys as a small matrix product over
// transposed keys (fp32 keys by 8-wide dot products), V accumulation four heads at a time, exp.
#include <immintrin.h>

#include <algorithm>
#include <array>
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
#pragma GCC target("avx2,fma,f16c")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#endif

// Inside the target region, so the shared algorithm is compiled for this ISA.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx2 {

namespace {

float hsum(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// Eight cached elements widened to fp32.
__m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__m256 load8(const bf16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
__m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// fp8 codes through fp16 (F16C), as the AVX-512 loads do: E5M2 is an fp16's top byte; E4M3's
// exponent and mantissa in an fp16's give its value times 2^-8.
__m256 load8(const fp8_e5m2_t* p) {
  return _mm256_cvtph_ps(_mm_slli_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), 8));
}
__m256 load8(const fp8_e4m3_t* p) {
  const __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(0x7f)), 7),
                                 _mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(0x80)), 8));
  return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
}

#include "kernels/attention_packed_keys.h"

// The largest lane.
float hmax(__m256 v) {
  __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_max_ps(b, _mm_movehl_ps(b, b));
  b = _mm_max_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// r[i] becomes column i of the 8 x 8 matrix the rows held.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4h + c]: rows 4h..4h+3 of column c (low 128 bits) and of column c + 4 (high).
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// Keys [0, nb) (nb <= 16) transposed to fp32: kt[e * 16 + j] is element e of key j (zero for keys
// past nb), each element widened as load8 widens it (exactly: a bf16, int8 or fp8 code has one
// fp32 value).
template <class T>
void pack_keys(const T* k, int64_t ldk, int64_t nb, int64_t d, float* kt) {
  for (int64_t j0 = 0; j0 < 16; j0 += 8) {
    int64_t c = 0;
    for (; c + 8 <= d; c += 8) {
      __m256 r[8];
      for (int j = 0; j < 8; ++j) r[j] = j0 + j < nb ? load8(k + (j0 + j) * ldk + c) : _mm256_setzero_ps();
      transpose8(r);
      for (int e = 0; e < 8; ++e) _mm256_store_ps(kt + (c + e) * 16 + j0, r[e]);
    }
    for (; c < d; ++c)
      for (int64_t j = 0; j < 8; ++j) kt[c * 16 + j0 + j] = j0 + j < nb ? kv_to_f32(k[(j0 + j) * ldk + c]) : 0.0f;
  }
}

// Head g's scores of 16 keys (its two half-block chains a[g]) times scale, to out + g * ldo (the
// first nb), and its running max mx[g] raised to their largest (no mx: no max).
template <int NG>
void store_scores(const __m256 (*a)[2], int64_t nb, float scale, float* out, int64_t ldo, float* mx) {
  const __m256 sv = _mm256_set1_ps(scale);
#pragma GCC unroll 8
  for (int g = 0; g < NG; ++g) {
    const __m256 r0 = _mm256_mul_ps(a[g][0], sv), r1 = _mm256_mul_ps(a[g][1], sv);
    float* o = out + g * ldo;
    if (nb == 16) {
      _mm256_storeu_ps(o, r0);
      _mm256_storeu_ps(o + 8, r1);
      if (mx) mx[g] = std::max(mx[g], hmax(_mm256_max_ps(r0, r1)));
    } else {
      alignas(32) float t[16];
      _mm256_store_ps(t, r0);
      _mm256_store_ps(t + 8, r1);
      for (int64_t j = 0; j < nb; ++j) {
        o[j] = t[j];
        if (mx) mx[g] = std::max(mx[g], t[j]);
      }
    }
  }
}

// Scores of NG heads against 16 packed keys: lane j of head g is the sum of q[e] * k_j[e] over e in
// order, one FMA chain per head and half block (2 NG chains hide the FMA's latency), each query
// element broadcast once for 16 keys. A score depends only on its head's query and its key.
template <int NG>
void scores_packed(const float* q, int64_t ldq, const float* kt, int64_t d, int64_t nb, float scale, float* out,
                   int64_t ldo, float* mx) {
  // Every loop over the heads is unrolled: an accumulator indexed at run time anywhere would keep
  // them all in memory, stored on every step of the e loop (scores ran at a third of the FMA peak).
  __m256 a[NG][2];
#pragma GCC unroll 8
  for (int g = 0; g < NG; ++g) a[g][0] = a[g][1] = _mm256_setzero_ps();
  for (int64_t e = 0; e < d; ++e) {
    const __m256 k0 = _mm256_load_ps(kt + e * 16), k1 = _mm256_load_ps(kt + e * 16 + 8);
#pragma GCC unroll 4
    for (int g = 0; g < NG; ++g) {
      const __m256 qe = _mm256_broadcast_ss(q + g * ldq + e);
      a[g][0] = _mm256_fmadd_ps(qe, k0, a[g][0]);
      a[g][1] = _mm256_fmadd_ps(qe, k1, a[g][1]);
    }
  }
  store_scores<NG>(a, nb, scale, out, ldo, mx);
}

// scores_packed for NB blocks of 16 packed keys at once (block b at kt[b], its first nb[b] keys,
// its scores to out[b]): the same chains, side by side, so one or two heads' scores do not wait
// on the FMA's latency.
template <int NG, int NB>
void scores_packed_multi(const float* q, int64_t ldq, const float* const* kt, int64_t d, const int64_t* nb,
                         float scale, float* const* out, int64_t ldo) {
  __m256 a[NB][NG][2];
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b)
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g) a[b][g][0] = a[b][g][1] = _mm256_setzero_ps();
  for (int64_t e = 0; e < d; ++e) {
    __m256 qe[NG];
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g) qe[g] = _mm256_broadcast_ss(q + g * ldq + e);
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
      const __m256 k0 = _mm256_load_ps(kt[b] + e * 16), k1 = _mm256_load_ps(kt[b] + e * 16 + 8);
#pragma GCC unroll 2
      for (int g = 0; g < NG; ++g) {
        a[b][g][0] = _mm256_fmadd_ps(qe[g], k0, a[b][g][0]);
        a[b][g][1] = _mm256_fmadd_ps(qe[g], k1, a[b][g][1]);
      }
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) store_scores<NG>(a[b], nb[b], scale, out[b], ldo, nullptr);
}

struct Ops {
  static void begin_job(int64_t /*rows*/) { packed_keys.forget(); }

  template <class T>
  static float dot(const float* a, const T* b, int64_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8(b + i + 8), s1);
    }
    for (; i + 8 <= d; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), s0);
    float r = hsum(_mm256_add_ps(s0, s1));
    for (; i < d; ++i) r += a[i] * kv_to_f32(b[i]);
    return r;
  }
  // fp32 keys, key by key (packing them would add a second pass over keys decode reads from
  // memory once).
  static float scores(const float* q, const float* k, int64_t ldk, int64_t n, int64_t d, float scale, float* out) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      out[j] = dot(q, k + j * ldk, d) * scale;
      m = std::max(m, out[j]);
    }
    return m;
  }
  // bf16 / int8 / fp8 keys of G query heads, 16 at a time as a small matrix product: the keys are
  // widened and transposed once for all the heads (and, kept in the job's cache, for the job's
  // other rows), where key by key each element was widened for every head and every key's
  // products folded by a horizontal sum. Every score has the bits scores_packed gives it, whatever
  // G or n. (fp32 keys have no scores_heads: attention_impl.h calls scores() head by head.)
  template <class T>
    requires(!std::is_same_v<T, float>)
  static void scores_heads(const float* q, int64_t ldq, int64_t G, const T* k, int64_t ldk, int64_t n, int64_t d,
                           float scale, float* out, int64_t ldo, float* mx) {
    scores_packed_blocks<4>(
        k, ldk, n, d, G, mx, [&](const T* kj, int64_t nb, float* kb) { pack_keys(kj, ldk, nb, d, kb); },
        [&](auto NG, int64_t g, const float* kb, int64_t nb, int64_t j0) {
          scores_packed<NG>(q + g * ldq, ldq, kb, d, nb, scale, out + g * ldo + j0, ldo, mx ? mx + g : nullptr);
        });
  }
  // fp32 keys head by head (scores() above); with max_of the step's max is taken after.
  static void scores_heads(const float* q, int64_t ldq, int64_t G, const float* k, int64_t ldk, int64_t n, int64_t d,
                           float scale, float* out, int64_t ldo, float* mx) {
    for (int64_t g = 0; g < G; ++g) {
      const float m = scores(q + g * ldq, k, ldk, n, d, scale, out + g * ldo);
      if (mx) mx[g] = m;
    }
  }
  // The largest of x[0, n): a step's max in one pass (scores_runs leaves it to this; exact, so the
  // same as the scores' own maxima).
  static float max_of(const float* x, int64_t n) {
    __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float r = hmax(m);
    for (; i < n; ++i) r = std::max(r, x[i]);
    return r;
  }
  // A step's scores (attention_impl.h, scores_runs) over bf16 / int8 / fp8 keys. One or two heads
  // a KV head (MHA models, DeepSeek's decompressed MLA) take the blocks of all the step's pages
  // together (scores_packed_multi: four blocks for one head, two for two, as sixteen registers
  // allow): a page's block alone left such a head's two chains waiting on the FMA's latency.
  // More heads' steps are left to step_scores, page by page (false). Each score has
  // scores_heads' bits, then (int8 / fp8) times its key's scale.
  template <class T>
    requires(!std::is_same_v<T, float>)
  static bool scores_runs(const float* q, int64_t ldq, int64_t G, const PageRun<T>* runs, const float* const* scales,
                          int64_t n_runs, int64_t d, float scale, float* out, int64_t ldo) {
    if (G > 2) return false;
    const int64_t per = G == 1 ? 4 : 2;  // blocks a call
    std::array<const float*, 4> kt;
    std::array<int64_t, 4> nb;
    std::array<float*, 4> o;
    int64_t nblk = 0;
    const auto flush = [&] {
      if (G == 1)
        with_count<4>(nblk, [&](auto NB) {
          scores_packed_multi<1, NB>(q, ldq, kt.data(), d, nb.data(), scale, o.data(), ldo);
        });
      else
        with_count<2>(nblk, [&](auto NB) {
          scores_packed_multi<2, NB>(q, ldq, kt.data(), d, nb.data(), scale, o.data(), ldo);
        });
      nblk = 0;
    };
    step_key_blocks<Ops>(
        runs, n_runs, d, [&](const T* k, int64_t ldk, int64_t n, float* p) { pack_keys(k, ldk, n, d, p); },
        [&](int64_t r, int64_t j0, int64_t n, const float* p) {
          kt[size_t(nblk)] = p, nb[size_t(nblk)] = n, o[size_t(nblk)] = out + runs[r].off + j0;
          if (++nblk == per) flush();
        });
    if (nblk) flush();
    if (scales)  // as step_scores multiplies them (mul_to)
      for (int64_t r = 0; r < n_runs; ++r)
        for (int64_t g = 0; g < G; ++g) {
          float* x = out + g * ldo + runs[r].off;
          for (int64_t j = 0; j < runs[r].n; ++j) x[j] = x[j] * scales[r][j];
        }
    return true;
  }
  // A step's weighted values (attention_impl.h, axpy_runs) over bf16 / int8 / fp8 values. One or
  // two heads a KV head keep 64 (one head) or 32 (two) elements of each head's sums in registers
  // over all the step's pages: page by page they were loaded and stored again every 16 keys. More
  // heads' steps are left to step_values, page by page (false). Each sum runs over the keys in
  // order and the last d % 8 elements are axpy_rows' own, so the bits are page_axpy's; int8 / fp8
  // weights are first multiplied by their rows' scales, as step_values multiplies them.
  template <class T>
    requires(!std::is_same_v<T, float>)
  static bool axpy_runs(float* acc, int64_t lda, int64_t G, const PageRun<T>* runs, const float* const* scales,
                        int64_t n_runs, const float* p, int64_t ldp, int64_t d) {
    if (G > 2) return false;
    thread_local std::vector<float> pw;
    if (scales) {
      if (int64_t(pw.size()) < G * ldp) pw.resize(size_t(G * ldp));
      for (int64_t r = 0; r < n_runs; ++r)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t j = 0; j < runs[r].n; ++j)
            pw[size_t(g * ldp + runs[r].off + j)] = p[g * ldp + runs[r].off + j] * scales[r][j];
      p = pw.data();
    }
    for (int64_t r = 0; r < n_runs; ++r) prefetch_ahead(runs[r]);
    const int64_t d8 = d / 8 * 8;
    if (G == 1) {
      for (int64_t i = 0; i < d8; i += 64)
        with_count<8>(std::min<int64_t>(8, (d8 - i) / 8),
                      [&](auto NC) { axpy_runs_nh<1, NC, T>(acc + i, lda, runs, n_runs, p, ldp, i); });
    } else {
      for (int64_t i = 0; i < d8; i += 32)
        with_count<4>(std::min<int64_t>(4, (d8 - i) / 8),
                      [&](auto NC) { axpy_runs_nh<2, NC, T>(acc + i, lda, runs, n_runs, p, ldp, i); });
    }
    if (d8 < d)
      for (int64_t r = 0; r < n_runs; ++r)
        for (int64_t g = 0; g < G; ++g)
          axpy_rows(acc + g * lda + d8, runs[r].rows + d8, runs[r].ld, p + g * ldp + runs[r].off, runs[r].n, d - d8);
    return true;
  }
  // Elements [0, 8 NC) of NG heads' sums (head g's at acc + g * lda) plus the step's values from
  // column i on, weighed by p (head g's weight of run r's key j at p + g * ldp + off + j), the runs
  // in turn.
  template <int NG, int NC, class T>
  static void axpy_runs_nh(float* acc, int64_t lda, const PageRun<T>* runs, int64_t n_runs, const float* p,
                           int64_t ldp, int64_t i) {
    __m256 a[NG][NC];
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g)
#pragma GCC unroll 8
      for (int c = 0; c < NC; ++c) a[g][c] = _mm256_loadu_ps(acc + g * lda + 8 * c);
    for (int64_t r = 0; r < n_runs; ++r) {
      const PageRun<T>& u = runs[r];
      for (int64_t j = 0; j < u.n; ++j) {
        __m256 pj[NG];
#pragma GCC unroll 2
        for (int g = 0; g < NG; ++g) pj[g] = _mm256_set1_ps(p[g * ldp + u.off + j]);
        const T* v = u.rows + j * u.ld + i;
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) {
          const __m256 vv = load8(v + 8 * c);
#pragma GCC unroll 2
          for (int g = 0; g < NG; ++g) a[g][c] = _mm256_fmadd_ps(pj[g], vv, a[g][c]);
        }
      }
    }
#pragma GCC unroll 2
    for (int g = 0; g < NG; ++g)
#pragma GCC unroll 8
      for (int c = 0; c < NC; ++c) _mm256_storeu_ps(acc + g * lda + 8 * c, a[g][c]);
  }
  // axpy_rows() for up to 4 heads at once, 16 elements of each head's sums in registers at a time:
  // each 8-wide piece of a value row is loaded and widened once for all NH heads. Each head's sums
  // run over j in order, FMA by FMA, as in axpy_rows(), and the columns past the last 16 are
  // axpy_rows()'s own, so every bit is the same.
  template <int NH, class T>
  static void axpy_nh(float* acc, int64_t lda, const T* v, int64_t ldv, const float* p, int64_t ldp, int64_t n,
                      int64_t d) {
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
      __m256 a[NH][2];
      for (int h = 0; h < NH; ++h) {
        a[h][0] = _mm256_loadu_ps(acc + h * lda + i);
        a[h][1] = _mm256_loadu_ps(acc + h * lda + i + 8);
      }
      for (int64_t j = 0; j < n; ++j) {
        const __m256 v0 = load8(v + j * ldv + i), v1 = load8(v + j * ldv + i + 8);
#pragma GCC unroll 4
        for (int h = 0; h < NH; ++h) {
          const __m256 pj = _mm256_broadcast_ss(p + h * ldp + j);
          a[h][0] = _mm256_fmadd_ps(pj, v0, a[h][0]);
          a[h][1] = _mm256_fmadd_ps(pj, v1, a[h][1]);
        }
      }
      for (int h = 0; h < NH; ++h) {
        _mm256_storeu_ps(acc + h * lda + i, a[h][0]);
        _mm256_storeu_ps(acc + h * lda + i + 8, a[h][1]);
      }
    }
    if (i < d)
      for (int h = 0; h < NH; ++h) axpy_rows(acc + h * lda + i, v + i, ldv, p + h * ldp, n, d - i);
  }
  // (fp32 values: nothing to widen; attention_impl.h calls axpy_rows() head by head.)
  template <class T>
    requires(!std::is_same_v<T, float>)
  static void axpy_heads(float* acc, int64_t lda, int64_t G, const T* v, int64_t ldv, const float* p, int64_t ldp,
                         int64_t n, int64_t d) {
    head_groups<4>(G, [&](auto NH, int64_t g) {
      if constexpr (NH == 1) axpy_rows(acc + g * lda, v, ldv, p + g * ldp, n, d);
      else axpy_nh<NH, T>(acc + g * lda, lda, v, ldv, p + g * ldp, ldp, n, d);
    });
  }
  template <class T>
  static void axpy_rows(float* acc, const T* v, int64_t ldv, const float* p, int64_t n, int64_t d) {
    int64_t i = 0;
    // Four chunks at once: independent FMA chains, each element's sum over j in the same order.
    for (; i + 32 <= d; i += 32) {
      __m256 a[4];
      for (int c = 0; c < 4; ++c) a[c] = _mm256_loadu_ps(acc + i + 8 * c);
      for (int64_t j = 0; j < n; ++j) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        for (int c = 0; c < 4; ++c) a[c] = _mm256_fmadd_ps(pj, load8(v + j * ldv + i + 8 * c), a[c]);
      }
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(acc + i + 8 * c, a[c]);
    }
    for (; i + 8 <= d; i += 8) {
      __m256 a = _mm256_loadu_ps(acc + i);
      for (int64_t j = 0; j < n; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load8(v + j * ldv + i), a);
      _mm256_storeu_ps(acc + i, a);
    }
    for (; i < d; ++i)
      for (int64_t j = 0; j < n; ++j) acc[i] += p[j] * kv_to_f32(v[j * ldv + i]);
  }
  static void scale(float* acc, float c, int64_t d) {
    const __m256 cv = _mm256_set1_ps(c);
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) _mm256_storeu_ps(acc + i, _mm256_mul_ps(cv, _mm256_loadu_ps(acc + i)));
    for (; i < d; ++i) acc[i] *= c;
  }
  static float exp_sub_sum(float* x, int64_t n, float shift) {
    __m256 sum = _mm256_setzero_ps();
    const __m256 s = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
      _mm256_storeu_ps(x + i, e);
      sum = _mm256_add_ps(sum, e);
    }
    float r = hsum(sum);
    for (; i < n; ++i) {
      x[i] = std::exp(x[i] - shift);
      r += x[i];
    }
    return r;
  }
  static void softcap(float* x, int64_t n, float cap) { vec_softcap_isa(KernelIsa::Avx2, x, n, cap); }
};

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) { attention_job_impl<Ops>(c, j, parts); }

}  // namespace dpserve::kernels::avx2

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
