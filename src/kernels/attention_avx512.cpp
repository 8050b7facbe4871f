// AVX-512 attention primitives: 16-wide dot products, V accumulation and exp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_exp.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")

// Inside the target region, so the shared algorithm is compiled for this ISA.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx512 {

namespace {

__mmask16 head_mask(int64_t d, int64_t i) { return d - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - i)) - 1); }

struct Ops {
  static float dot(const float* a, const float* b, int64_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < d; i += 16) {
      const __mmask16 m = head_mask(d, i);
      s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return hsum512(_mm512_add_ps(s0, s1));
  }
  static void axpy_rows(float* acc, const float* v, int64_t ldv, const float* p, int64_t n, int64_t d) {
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = head_mask(d, i);
      __m512 a = _mm512_maskz_loadu_ps(m, acc + i);
      for (int64_t j = 0; j < n; ++j) a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, v + j * ldv + i), a);
      _mm512_mask_storeu_ps(acc + i, m, a);
    }
  }
  static void scale(float* acc, float c, int64_t d) {
    const __m512 cv = _mm512_set1_ps(c);
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = head_mask(d, i);
      _mm512_mask_storeu_ps(acc + i, m, _mm512_mul_ps(cv, _mm512_maskz_loadu_ps(m, acc + i)));
    }
  }
  static float exp_sub_sum(float* x, int64_t n, float shift) {
    __m512 sum = _mm512_setzero_ps();
    const __m512 s = _mm512_set1_ps(shift);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
      _mm512_mask_storeu_ps(x + i, m, e);
      sum = _mm512_add_ps(sum, e);
    }
    return hsum512(sum);
  }
};

}  // namespace

void attention_rows(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1) {
  attention_rows_impl<Ops>(c, s, kvh, i0, i1);
}

}  // namespace dpserve::kernels::avx512

#pragma GCC pop_options
