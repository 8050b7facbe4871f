#include "kernels/vec_math.h"

#include <algorithm>
#include <cmath>

#include "kernels/simd_exp.h"

namespace dpserve {

using kernels::exp256;
using kernels::exp512;
using kernels::hsum512;

namespace {

void silu_mul_portable(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// 0.5 (1 + tanh(y)) = 1 / (1 + exp(-2 y)): the sigmoid form needs one exp and no tanh.
constexpr float kGeluA = 1.5957691216057308f;  // 2 sqrt(2 / pi)
constexpr float kGeluB = 0.044715f;

void gelu_tanh_mul_portable(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    out[i] = x / (1.0f + std::exp(-kGeluA * (x + kGeluB * x * x * x))) * up[i];
  }
}

float exp_sub_sum_portable(float* x, int64_t n, float shift) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

void softcap_portable(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

__attribute__((target("avx512f,avx512dq"))) void softcap_avx512(float* x, int64_t n, float cap) {
  const __m512 c = _mm512_set1_ps(cap), two_c = _mm512_set1_ps(2.0f * cap), k = _mm512_set1_ps(2.0f / cap);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 e = exp512(_mm512_mul_ps(k, _mm512_maskz_loadu_ps(m, x + i)));
    _mm512_mask_storeu_ps(x + i, m, _mm512_sub_ps(c, _mm512_div_ps(two_c, _mm512_add_ps(one, e))));
  }
}

__attribute__((target("avx2,fma"))) void softcap_avx2(float* x, int64_t n, float cap) {
  const __m256 c = _mm256_set1_ps(cap), two_c = _mm256_set1_ps(2.0f * cap), k = _mm256_set1_ps(2.0f / cap);
  const __m256 one = _mm256_set1_ps(1.0f);
  auto block = [&](float* x8) {
    const __m256 e = exp256(_mm256_mul_ps(k, _mm256_loadu_ps(x8)));
    _mm256_storeu_ps(x8, _mm256_sub_ps(c, _mm256_div_ps(two_c, _mm256_add_ps(one, e))));
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) block(x + i);
  if (i == n) return;
  alignas(32) float t8[8] = {};  // the tail through the same vector code, as silu_mul_avx2's
  for (int64_t j = 0; i + j < n; ++j) t8[j] = x[i + j];
  block(t8);
  for (int64_t j = 0; i + j < n; ++j) x[i + j] = t8[j];
}

__attribute__((target("avx512f,avx512dq"))) void silu_mul_avx512(const float* gate, const float* up, float* out,
                                                                int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
}

__attribute__((target("avx512f,avx512dq"))) void gelu_tanh_mul_avx512(const float* gate, const float* up, float* out,
                                                                      int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f), a = _mm512_set1_ps(-kGeluA), b = _mm512_set1_ps(kGeluB);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
    const __m512 y = _mm512_mul_ps(a, _mm512_fmadd_ps(_mm512_mul_ps(b, g), _mm512_mul_ps(g, g), g));
    const __m512 e = exp512(y);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
}

__attribute__((target("avx512f,avx512dq"))) float exp_sub_sum_avx512(float* x, int64_t n, float shift) {
  __m512 sum = _mm512_setzero_ps();
  const __m512 s = _mm512_set1_ps(shift);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    _mm512_mask_storeu_ps(x + i, m, e);
    sum = _mm512_add_ps(sum, e);
  }
  return hsum512(sum);
}

__attribute__((target("avx2,fma"))) void silu_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  if (i == n) return;
  // The tail through the same vector code (zero-padded), so an element's value never depends on
  // where a caller's range happens to end.
  alignas(32) float g8[8] = {}, u8[8] = {};
  for (int64_t j = 0; i + j < n; ++j) g8[j] = gate[i + j], u8[j] = up[i + j];
  const __m256 g = _mm256_load_ps(g8);
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
  _mm256_store_ps(g8, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_load_ps(u8)));
  for (int64_t j = 0; i + j < n; ++j) out[i + j] = g8[j];
}

__attribute__((target("avx2,fma"))) void gelu_tanh_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), a = _mm256_set1_ps(-kGeluA), b = _mm256_set1_ps(kGeluB);
  auto block = [&](const float* g8, const float* u8, float* o8) {
    const __m256 g = _mm256_loadu_ps(g8);
    const __m256 y = _mm256_mul_ps(a, _mm256_fmadd_ps(_mm256_mul_ps(b, g), _mm256_mul_ps(g, g), g));
    const __m256 e = exp256(y);
    _mm256_storeu_ps(o8, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(u8)));
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) block(gate + i, up + i, out + i);
  if (i == n) return;
  // The tail through the same vector code (zero-padded), as silu_mul_avx2 does.
  alignas(32) float g8[8] = {}, u8[8] = {}, o8[8];
  for (int64_t j = 0; i + j < n; ++j) g8[j] = gate[i + j], u8[j] = up[i + j];
  block(g8, u8, o8);
  for (int64_t j = 0; i + j < n; ++j) out[i + j] = o8[j];
}

__attribute__((target("avx2,fma"))) float exp_sub_sum_avx2(float* x, int64_t n, float shift) {
  __m256 sum = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
  return total + exp_sub_sum_portable(x + i, n - i, shift);
}

}  // namespace

void vec_silu_mul_isa(KernelIsa isa, const float* gate, const float* up, float* out, int64_t n) {
  switch (isa) {
    case KernelIsa::Amx:
    case KernelIsa::Avx512Bf16:
    case KernelIsa::Avx512: return silu_mul_avx512(gate, up, out, n);
    case KernelIsa::Avx2: return silu_mul_avx2(gate, up, out, n);
    case KernelIsa::Portable: return silu_mul_portable(gate, up, out, n);
  }
}

void vec_gelu_tanh_mul_isa(KernelIsa isa, const float* gate, const float* up, float* out, int64_t n) {
  switch (isa) {
    case KernelIsa::Amx:
    case KernelIsa::Avx512Bf16:
    case KernelIsa::Avx512: return gelu_tanh_mul_avx512(gate, up, out, n);
    case KernelIsa::Avx2: return gelu_tanh_mul_avx2(gate, up, out, n);
    case KernelIsa::Portable: return gelu_tanh_mul_portable(gate, up, out, n);
  }
}

void vec_softcap_isa(KernelIsa isa, float* x, int64_t n, float cap) {
  switch (isa) {
    case KernelIsa::Amx:
    case KernelIsa::Avx512Bf16:
    case KernelIsa::Avx512: return softcap_avx512(x, n, cap);
    case KernelIsa::Avx2: return softcap_avx2(x, n, cap);
    case KernelIsa::Portable: return softcap_portable(x, n, cap);
  }
}

void vec_softcap(float* x, int64_t n, float cap) { vec_softcap_isa(best_kernel_isa(), x, n, cap); }

float vec_exp_sub_sum_isa(KernelIsa isa, float* x, int64_t n, float shift) {
  switch (isa) {
    case KernelIsa::Amx:
    case KernelIsa::Avx512Bf16:
    case KernelIsa::Avx512: return exp_sub_sum_avx512(x, n, shift);
    case KernelIsa::Avx2: return exp_sub_sum_avx2(x, n, shift);
    case KernelIsa::Portable: return exp_sub_sum_portable(x, n, shift);
  }
  return 0.0f;
}

void vec_silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  vec_silu_mul_isa(best_kernel_isa(), gate, up, out, n);
}

void vec_gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  vec_gelu_tanh_mul_isa(best_kernel_isa(), gate, up, out, n);
}

void vec_swiglu_oai_mul(const float* gate, const float* up, float* out, int64_t n, float limit) {
  constexpr float kAlpha = 1.702f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = std::min(gate[i], limit), u = std::clamp(up[i], -limit, limit);
    out[i] = (u + 1.0f) * (g / (1.0f + std::exp(-kAlpha * g)));
  }
}

float vec_exp_sub_sum(float* x, int64_t n, float shift) { return vec_exp_sub_sum_isa(best_kernel_isa(), x, n, shift); }

}  // namespace dpserve
