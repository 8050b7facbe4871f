// AVX2 attention primitives: 8-wide dot products, V accumulation and exp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_exp.h"
#include "kernels/vec_math.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#ifdef __clang__  // clang ignores GCC's target pragma (the fuzz build compiles these files with clang)
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

struct Ops {
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
  template <class T>
  static float scores(const float* q, const T* k, int64_t ldk, int64_t n, int64_t d, float scale, float* out) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      out[j] = dot(q, k + j * ldk, d) * scale;
      m = std::max(m, out[j]);
    }
    return m;
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
