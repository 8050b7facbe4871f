// AVX-512 matmul blocks for fp32, fp16 (vcvtph2ps) and, on CPUs without
// AVX-512 BF16, bf16 weights (widened to fp32 by a shift; products stay exact).
// 16 fp32 lanes over K per accumulator.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "core/check.h"
#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2"))), apply_to = function)
#endif

// Inside the target region, so the tile loop is compiled for this ISA.
#include "kernels/matmul_tile.h"

namespace dpserve::kernels::avx512 {

namespace {

__mmask16 tail_mask(int64_t n) { return __mmask16((1u << n) - 1); }

__m512 widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

struct Base {
  using Acc = __m512;
  using XV = __m512;
  using WV = __m512;
  static constexpr int64_t kChunk = 16;
  static constexpr int kMaxMR = 4, kMaxNR = 8, kGemmNR = 6, kGemvNR = 8;
  static constexpr int64_t kPanel = 512;
  static Acc zero() { return _mm512_setzero_ps(); }
  static Acc madd(Acc a, XV x, WV w) { return _mm512_fmadd_ps(x, w, a); }
  static float reduce(Acc v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
  }
};

struct F32 : Base {
  using XT = float;
  using WT = float;
  static XV load_x(const float* p) { return _mm512_loadu_ps(p); }
  static WV load_w(const float* p) { return _mm512_loadu_ps(p); }
  static XV load_x_tail(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
  static WV load_w_tail(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
};

struct F16 : Base {
  using XT = float;
  using WT = uint16_t;
  static XV load_x(const float* p) { return _mm512_loadu_ps(p); }
  static WV load_w(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static XV load_x_tail(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
  static WV load_w_tail(const uint16_t* p, int64_t n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail_mask(n), p));
  }
};

struct Bf16 : Base {
  using XT = uint16_t;
  using WT = uint16_t;
  static XV load_x(const uint16_t* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static WV load_w(const uint16_t* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static XV load_x_tail(const uint16_t* p, int64_t n) { return widen_bf16(_mm256_maskz_loadu_epi16(tail_mask(n), p)); }
  static WV load_w_tail(const uint16_t* p, int64_t n) { return widen_bf16(_mm256_maskz_loadu_epi16(tail_mask(n), p)); }
};

}  // namespace

template <class P>
void typed_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  block_loop<P>(static_cast<const typename P::XT*>(a.act), a.act_ld / int64_t(sizeof(typename P::XT)),
                static_cast<const typename P::WT*>(a.w.data), a.w.ld, a.w.cols, a.y, a.ldy, m0, m1, n0, n1);
}

const MatmulKernel kF32{"avx512 f32", f32_act_row_bytes, f32_prepare_row, typed_block<F32>, 24, 32};
const MatmulKernel kF16{"avx512 f16", f32_act_row_bytes, f32_prepare_row, typed_block<F16>, 24, 32};
const MatmulKernel kBf16{"avx512 bf16", bf16_act_row_bytes, bf16_prepare_row, typed_block<Bf16>, 24, 32};

}  // namespace dpserve::kernels::avx512

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
