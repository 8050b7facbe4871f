// AVX2 + FMA matmul blocks (fp32, fp16 via F16C, bf16 widened by a shift):
// 8 fp32 lanes over K per accumulator, tiles sized for 16 ymm registers.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "core/check.h"
#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#endif

// Inside the target region, so the tile loop is compiled for this ISA.
#include "kernels/matmul_tile.h"

namespace dpserve::kernels::avx2 {

namespace {

// Lane i is kept when i < n: compare a lane index ramp against n.
__m256i tail_mask(int64_t n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }

__m128i load_u16_tail(const uint16_t* p, int64_t n) {
  alignas(16) uint16_t tmp[8] = {};
  for (int64_t i = 0; i < n; ++i) tmp[i] = p[i];
  return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
}

__m256 widen_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

struct Base {
  using Acc = __m256;
  using XV = __m256;
  using WV = __m256;
  static constexpr int64_t kChunk = 8;
  static constexpr int kMaxMR = 3, kMaxNR = 4, kGemmNR = 4, kGemvNR = 4;
  static constexpr int64_t kPanel = 512;
  static Acc zero() { return _mm256_setzero_ps(); }
  static Acc madd(Acc a, XV x, WV w) { return _mm256_fmadd_ps(x, w, a); }
  static float reduce(Acc v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
  }
};

struct F32 : Base {
  using XT = float;
  using WT = float;
  static XV load_x(const float* p) { return _mm256_loadu_ps(p); }
  static WV load_w(const float* p) { return _mm256_loadu_ps(p); }
  static XV load_x_tail(const float* p, int64_t n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static WV load_w_tail(const float* p, int64_t n) { return _mm256_maskload_ps(p, tail_mask(n)); }
};

struct F16 : Base {
  using XT = float;
  using WT = uint16_t;
  static XV load_x(const float* p) { return _mm256_loadu_ps(p); }
  static WV load_w(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static XV load_x_tail(const float* p, int64_t n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static WV load_w_tail(const uint16_t* p, int64_t n) { return _mm256_cvtph_ps(load_u16_tail(p, n)); }
};

struct Bf16 : Base {
  using XT = uint16_t;
  using WT = uint16_t;
  static XV load_x(const uint16_t* p) { return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static WV load_w(const uint16_t* p) { return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static XV load_x_tail(const uint16_t* p, int64_t n) { return widen_bf16(load_u16_tail(p, n)); }
  static WV load_w_tail(const uint16_t* p, int64_t n) { return widen_bf16(load_u16_tail(p, n)); }
};

}  // namespace

template <class P>
void typed_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  block_loop<P>(static_cast<const typename P::XT*>(a.act), a.act_ld / int64_t(sizeof(typename P::XT)),
                static_cast<const typename P::WT*>(a.w.data), a.w.ld, a.w.cols, a.y, a.ldy, m0, m1, n0, n1);
}

const MatmulKernel kF32{"avx2 f32", f32_act_row_bytes, f32_prepare_row, typed_block<F32>, 24, 32};
const MatmulKernel kF16{"avx2 f16", f32_act_row_bytes, f32_prepare_row, typed_block<F16>, 24, 32};
const MatmulKernel kBf16{"avx2 bf16", bf16_act_row_bytes, bf16_prepare_row, typed_block<Bf16>, 24, 32};

}  // namespace dpserve::kernels::avx2

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
