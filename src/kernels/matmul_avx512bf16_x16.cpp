// AVX-512 BF16 matmul block for BF16_X16 weights (16-row groups, kernels/repack.h): an outer
// product. One 64-byte load is a pair of elements of 16 weight rows; vdpbf16ps multiplies it by
// an activation row's pair, broadcast, into one accumulator whose lane r is output row r. A tile
// is up to 8 activation rows x 3 groups (48 outputs, 24 accumulators): per pair, 3 weight loads
// and 8 broadcasts feed 24 instructions, and no horizontal sums are left at the end.
//
// Every y[m, n] is one sequence whatever the tile or block: lane n % 16 of one accumulator,
// starting at zero, takes the pairs of K in order (through y between K panels, which stores and
// reloads it exactly). So a row's result never depends on the other rows of the batch.
//
// Against the 8-row dot-product layout this replaced (a lane per K position, summed at the end),
// the weights of a tile pass through L1 once per 8 activation rows instead of once per 3, and a
// 32-row product from DRAM ran at 0.85-0.88 of the bf16 peak instead of 0.68-0.72
// (docs/kernels.md).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/matmul.h"
#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2"))), apply_to = function)
#endif

namespace dpserve::kernels::avx512bf16 {

namespace {

#include "kernels/matmul_x16_avx512_block.h"

// One tile (matmul_x16_avx512_block.h). The prefetches `ahead` are the first row tile's, which
// streams the weights from memory (kernels::bf16_weight_prefetch()).
template <int MR, int NR>
void tile(const uint16_t* x, int64_t ldx, const uint16_t* wg, int64_t group_ld, int64_t p0, int64_t p1, float* y,
          int64_t ldy, __mmask16 last, bool first, int64_t ahead) {
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
      acc[i][j] = first ? _mm512_setzero_ps()
                        : _mm512_maskz_loadu_ps(j == NR - 1 ? last : __mmask16(0xFFFF), y + i * ldy + kRows * j);
  for (int64_t p = p0; p < p1; ++p) {
    if (ahead > 0) {
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(wg + j * group_ld + (p + ahead) * kPairElems), _MM_HINT_T1);
    }
    __m512bh wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(wg + j * group_ld + p * kPairElems);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, x + i * ldx + 2 * p, 4);
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xb, wv[j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
      _mm512_mask_storeu_ps(y + i * ldy + kRows * j, j == NR - 1 ? last : __mmask16(0xFFFF), acc[i][j]);
}

template <int MR>
constexpr TileFn<uint16_t> kTileRow[kNR] = {&tile<MR, 1>, &tile<MR, 2>, &tile<MR, 3>};
constexpr const TileFn<uint16_t>* kTiles[kMR] = {kTileRow<1>, kTileRow<2>, kTileRow<3>, kTileRow<4>,
                                                 kTileRow<5>, kTileRow<6>, kTileRow<7>, kTileRow<8>};

}  // namespace

// Column blocks of whole 3-group tiles; up to 64 rows (8 tiles) pass a block's weights in L2.
const MatmulKernel kBf16X16{"avx512-bf16 bf16x16", bf16_act_row_bytes, bf16_prepare_row, x16_block<uint16_t, kMR, kNR, kTiles>,
                            kNR * kRows, 8 * kMR};

}  // namespace dpserve::kernels::avx512bf16

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
