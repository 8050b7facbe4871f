// AVX-512 BF16 matmul block for bf16 weights: vdpbf16ps multiplies 32 bf16
// pairs into 16 fp32 lanes per instruction (each lane takes k = 32c + 2j, 2j+1).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2"))), apply_to = function)
#endif

// Inside the target region, so the tile loop is compiled for this ISA.
#include "kernels/matmul_tile.h"

namespace dpserve::kernels::avx512bf16 {

namespace {

struct Policy {
  using Acc = __m512;
  using XV = __m512bh;
  using WV = __m512bh;
  using XT = uint16_t;
  using WT = uint16_t;
  static constexpr int64_t kChunk = 32;
  // A GEMV walks one W row at a time: each thread's rows then form one sequential stream the
  // hardware prefetchers follow (8 rows at once, 8 streams, measured 1.3x slower on Zen 4).
  static constexpr int kMaxMR = 4, kMaxNR = 8, kGemmNR = 6, kGemvNR = 1;
  static constexpr int64_t kPanel = 1024;
  static Acc zero() { return _mm512_setzero_ps(); }
  static XV load_x(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static WV load_w(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  // x rows are zero-padded to a whole chunk (matmul_impl.h), so only W needs a mask.
  static XV load_x_tail(const uint16_t* p, int64_t) { return (__m512bh)_mm512_loadu_si512(p); }
  static WV load_w_tail(const uint16_t* p, int64_t n) {
    return (__m512bh)_mm512_maskz_loadu_epi16(__mmask32((uint64_t(1) << n) - 1), p);
  }
  static Acc madd(Acc a, XV x, WV w) { return _mm512_dpbf16_ps(a, x, w); }
  static float reduce(Acc v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
  }
};

}  // namespace

void bf16_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  block_loop<Policy>(static_cast<const uint16_t*>(a.act), a.act_ld / 2, static_cast<const uint16_t*>(a.w.data), a.w.ld,
                     a.w.cols, a.y, a.ldy, m0, m1, n0, n1);
}

const MatmulKernel kBf16{"avx512-bf16 bf16", bf16_act_row_bytes, bf16_prepare_row, bf16_block, 24, 32};

}  // namespace dpserve::kernels::avx512bf16

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
