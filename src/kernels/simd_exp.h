// Internal: lane sum and vectorised expf (Cephes-style range reduction + degree-6
// polynomial, ~2 ulp) for AVX-512 and AVX2. Inputs below -87.3 give exactly 0
// (so exp(-inf) = 0 in softmax); inputs above 88.3 saturate at exp(88.3).
#pragma once

#include <immintrin.h>

namespace dpserve::kernels {

#define DPSERVE_EXP_POLY(V, FMA, SET1, r)                                                 \
  FMA(FMA(FMA(FMA(FMA(SET1(1.9875691500e-4f), r, SET1(1.3981999507e-3f)), r,             \
                  SET1(8.3334519073e-3f)), r, SET1(4.1665795894e-2f)), r,                \
          SET1(1.6666665459e-1f)), r, SET1(5.0000001201e-1f))

__attribute__((target("avx512f"), always_inline)) static inline __m512 exp512(__m512 x) {
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  const __m512 p = DPSERVE_EXP_POLY(__m512, _mm512_fmadd_ps, _mm512_set1_ps, r);
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(__mmask16(~tiny), _mm512_scalef_ps(y, n));
}

// exp(x) for x <= 0 (a softmax's scores less their max), where the upper clamp of exp512 is not
// needed: one-constant range reduction and a degree-5 polynomial (fitted for relative error on
// [-ln 2 / 2, ln 2 / 2]: ~1e-7, a few ulp with rounding), 2^n applied by vscalefps. Below -87.3
// exactly 0, as exp512: vscalefps would give subnormals there, and on Intel each vector with one
// costs a microcode assist (prefill attention 3x slower once a row's scores spread past 87).
__attribute__((target("avx512f"), always_inline)) static inline __m512 exp512_nonpositive(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182f), x);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(8.31246e-3f), r, _mm512_set1_ps(4.188997e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.16667115f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.49999233f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(live, p, n);
}

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 exp256(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  const __m256 p = DPSERVE_EXP_POLY(__m256, _mm256_fmadd_ps, _mm256_set1_ps, r);
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // 2^n built in the exponent field; n is in [-126, 127] after the clamp.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

#undef DPSERVE_EXP_POLY

// Sum of the 16 lanes in a fixed tree (GCC 12's _mm512_reduce_add_ps warns spuriously).
__attribute__((target("avx512f,avx512dq"), always_inline)) static inline float hsum512(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

}  // namespace dpserve::kernels
