#include "kernels/quant_act.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/check.h"

namespace dpserve {

int64_t act_block_elems(DType t) {
  switch (dtype_plain(t)) {
    case DType::Q8_0:
    case DType::Q4_0: return 32;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return 256;
    default: fail("no int8 activation format for {} weights", dtype_name(t));
  }
}

QuantActLayout::QuantActLayout(int64_t block_, int64_t K_) : block(block_), K(K_) {
  d = (K + 63) / 64 * 64;
  s32 = d + (K / block) * 4;
  s32h = s32 + (K / 32) * 4;
  s16 = s32h + (K / 32) * 2;
  bytes = (s16 + (K / 16) * 2 + 63) / 64 * 64;
}

void QuantActs::reset(int64_t block, int64_t M, int64_t K) {
  DP_CHECK((block == 32 || block == 256) && K % block == 0 && M >= 0, "QuantActs: bad shape");
  block_ = block;
  M_ = M;
  K_ = K;
  ld_ = quant_act_row_bytes(block, K) + 64;
  if (buf_.size() < size_t(M * ld_ + 64)) buf_.resize(size_t(M * ld_ + 64));
}

namespace {

// A block's scale: fp32 for 256-element blocks (llama.cpp's Q8_K), rounded to f16 for 32-element
// ones (llama.cpp's Q8_0 activation blocks store d as f16; the codes use the unrounded 127 / amax,
// as ggml's x86 quantize_row_q8_0 does). Rounding it the same way makes Q8_0 / Q4_0 products
// agree with llama.cpp's instead of differing by rms ~0.01 of the logits' spread.
inline float act_scale(float amax, int64_t n) {
  const float d = amax / 127.0f;
  // (A scale past f16's range, activations above 8e6, stays fp32 rather than becoming infinite.)
  return n == 32 && d < 65504.0f ? f16_to_f32(f32_to_f16(d)) : d;
}

// The reference: one block of n elements.
void quantize_block_ref(const float* x, int n, int8_t* q, float* d) {
  float amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  *d = act_scale(amax, n);
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = int8_t(std::nearbyint(x[i] * id));
}

// The tail padding and code sums of a quantized row (every path shares this: exact integers).
void finish_row(const QuantActLayout& L, uint8_t* row) {
  int8_t* q = reinterpret_cast<int8_t*>(row);
  std::memset(q + L.K, 0, size_t(L.d - L.K));
  int32_t* s32 = reinterpret_cast<int32_t*>(row + L.s32);
  int16_t* s32h = reinterpret_cast<int16_t*>(row + L.s32h);
  int16_t* s16 = reinterpret_cast<int16_t*>(row + L.s16);
  for (int64_t j = 0; j < L.K / 16; ++j) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += q[16 * j + i];
    s16[j] = int16_t(s);
  }
  for (int64_t j = 0; j < L.K / 32; ++j) {
    s32[j] = s16[2 * j] + s16[2 * j + 1];
    s32h[j] = int16_t(s32[j]);
  }
}

void quantize_row_portable(const QuantActLayout& L, const float* x, uint8_t* row) {
  int8_t* q = reinterpret_cast<int8_t*>(row);
  float* d = reinterpret_cast<float*>(row + L.d);
  for (int64_t b = 0; b < L.K / L.block; ++b) quantize_block_ref(x + b * L.block, int(L.block), q + b * L.block, d + b);
  finish_row(L, row);
}

__attribute__((target("avx2,fma"))) void quantize_row_avx2(const QuantActLayout& L, const float* xr, uint8_t* row) {
  const int64_t B = L.block;
  int8_t* q = reinterpret_cast<int8_t*>(row);
  float* d = reinterpret_cast<float*>(row + L.d);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < L.K / B; ++b) {
    const float* xb = xr + b * B;
    __m256 mx = _mm256_setzero_ps();
    for (int64_t i = 0; i < B; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xb + i), abs_mask));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    d[b] = act_scale(amax, B);
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    for (int64_t i = 0; i < B; i += 32) {
      // Round half to even (MXCSR default), then pack 4 x 8 int32 to 32 int8 (values fit).
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i), id));
      const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), id));
      const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 16), id));
      const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 24), id));
      const __m256i w01 = _mm256_packs_epi32(i0, i1), w23 = _mm256_packs_epi32(i2, i3);
      __m256i b8 = _mm256_packs_epi16(w01, w23);
      // The packs interleave 128-bit lanes: restore element order.
      b8 = _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * B + i), b8);
    }
  }
  finish_row(L, row);
}

__attribute__((target("avx512f,avx512bw"))) void quantize_row_avx512(const QuantActLayout& L, const float* xr,
                                                                     uint8_t* row) {
  const int64_t B = L.block;
  int8_t* q = reinterpret_cast<int8_t*>(row);
  float* d = reinterpret_cast<float*>(row + L.d);
  for (int64_t b = 0; b < L.K / B; ++b) {
    const float* xb = xr + b * B;
    __m512 mx = _mm512_setzero_ps();
    for (int64_t i = 0; i < B; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
    const float amax = _mm512_reduce_max_ps(mx);
    d[b] = act_scale(amax, B);
    const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    for (int64_t i = 0; i < B; i += 16) {
      const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + i), id));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * B + i), _mm512_cvtepi32_epi8(v));
    }
  }
  finish_row(L, row);
}

}  // namespace

void quantize_act_row(KernelIsa isa, int64_t block, const float* x, int64_t K, void* row) {
  const QuantActLayout L(block, K);
  uint8_t* r = static_cast<uint8_t*>(row);
  switch (isa) {
    case KernelIsa::Portable: return quantize_row_portable(L, x, r);
    case KernelIsa::Avx2: return quantize_row_avx2(L, x, r);
    default: return quantize_row_avx512(L, x, r);
  }
}

void quantize_acts(KernelIsa isa, const float* x, int64_t ldx, int64_t m0, int64_t m1, QuantActs& a) {
  DP_CHECK(m0 >= 0 && m1 <= a.rows(), "quantize_acts: rows [{}, {}) outside {}", m0, m1, a.rows());
  for (int64_t m = m0; m < m1; ++m) quantize_act_row(isa, a.block(), x + m * ldx, a.cols(), a.row(m));
}

}  // namespace dpserve
