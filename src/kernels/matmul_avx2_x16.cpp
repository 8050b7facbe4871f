// AVX2 + FMA matmul blocks for BF16_X16 and F16_X16 weights (16-row groups, kernels/repack.h): an outer product
// without vdpbf16ps. Half a pair of a group (32 bytes) is rows 0-7 or 8-15 of elements 2p, 2p + 1;
// shifted left by 16 it is element 2p of those rows as fp32, with the low halves masked off it is
// element 2p + 1. Each is multiplied by the activation row's element broadcast, into an
// accumulator whose lane r is output row r. A tile is up to 5 activation rows x one group: per
// pair, 2 weight loads, 4 integer ops and 10 broadcasts feed 20 FMAs, and no horizontal sums are
// left at the end.
//
// Against the dot-product kernel on plain bf16 rows (matmul_avx2.cpp: a lane per K position, both
// operands widened per tile, summed at the end) this took the bf16 product from 0.39-0.47 of a
// Zen 3's fp32 FMA peak to 0.62-0.75 (docs/kernels.md).
//
// F16_X16 weights take the same block: rows 0-7 or 8-15 of element 2p are 16 bytes of the pair's
// first 32, of 2p + 1 of its second, each widened exactly by one vcvtph2ps (F16C); the activations
// are fp32 as they are.
//
// Every y[m, n] is one sequence whatever the tile or block: lane n % 8 of one accumulator, starting
// at zero, takes the elements of K in order (through y between K panels, which stores and reloads
// it exactly). So a row's result never depends on the other rows of the batch.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#endif

namespace dpserve::kernels::avx2 {

namespace {

constexpr int kRows = 16;           // rows per group: the lanes of two accumulators
constexpr int64_t kPairElems = 32;  // 16-bit elements of one pair of a group (64 bytes: elements 2p, 2p + 1)
constexpr int kMR = 5;              // most activation rows per tile: 10 accumulators, 4 W, 2 x
constexpr int kNR = 2;              // most groups per tile (single-row tiles: 4 chains hide FMA latency)
// K panel in pairs: one group's panel (16 KiB) stays in L1 while the block's activation tiles pass it.
constexpr int64_t kPanelPairs = 256;

__m256i lane_mask(int64_t n) {  // lanes < n (n in [0, 8])
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// y[0:MR, 0:16 NR] (row stride ldy) over pairs [p0, p1) of the NR groups at wg, wg + group_ld:
// from zero (first) or from what y holds. Lanes of the last group at or past `valid` are not stored.
// The weights are BF16_X16, or F16_X16 when F16.
template <bool F16, int MR, int NR>
void tile(const float* x, int64_t ldx, const uint16_t* wg, int64_t group_ld, int64_t p0, int64_t p1, float* y,
          int64_t ldy, int64_t valid, bool first) {
  __m256i keep[2 * NR];
#pragma GCC unroll 4
  for (int h = 0; h < 2 * NR; ++h) keep[h] = lane_mask(std::clamp<int64_t>(valid - 8 * h, 0, 8));
  __m256 acc[MR][2 * NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int h = 0; h < 2 * NR; ++h) acc[i][h] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + i * ldy + 8 * h, keep[h]);
  for (int64_t p = p0; p < p1; ++p) {
    __m256 we[2 * NR], wo[2 * NR];
#pragma GCC unroll 4
    for (int h = 0; h < 2 * NR; ++h) {
      const uint16_t* line = wg + (h / 2) * group_ld + p * kPairElems;
      if constexpr (F16) {
        we[h] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(line + (h % 2) * 8)));
        wo[h] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(line + 16 + (h % 2) * 8)));
      } else {
        const __m256i odd = _mm256_set1_epi32(int(0xffff0000u));
        const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(line + (h % 2) * 16));
        we[h] = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
        wo[h] = _mm256_castsi256_ps(_mm256_and_si256(pairs, odd));
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 xe = _mm256_broadcast_ss(x + i * ldx + 2 * p), xo = _mm256_broadcast_ss(x + i * ldx + 2 * p + 1);
#pragma GCC unroll 4
      for (int h = 0; h < 2 * NR; ++h) acc[i][h] = _mm256_fmadd_ps(xo, wo[h], _mm256_fmadd_ps(xe, we[h], acc[i][h]));
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int h = 0; h < 2 * NR; ++h) _mm256_maskstore_ps(y + i * ldy + 8 * h, keep[h], acc[i][h]);
}

using TileFn = void (*)(const float*, int64_t, const uint16_t*, int64_t, int64_t, int64_t, float*, int64_t, int64_t,
                        bool);

template <bool F16, int MR>
constexpr TileFn kTileRow[kNR] = {&tile<F16, MR, 1>, &tile<F16, MR, 2>};
template <bool F16>
constexpr const TileFn* kTiles[kMR] = {kTileRow<F16, 1>, kTileRow<F16, 2>, kTileRow<F16, 3>, kTileRow<F16, 4>,
                                       kTileRow<F16, 5>};

// y[m0:m1, n0:n1]; n0 is a multiple of 16 (a group).
template <bool F16>
void x16_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t ldx = a.act_ld / 4;
  const float* x = static_cast<const float*>(a.act) + m0 * ldx;  // row m at x + m * ldx
  const uint16_t* w = static_cast<const uint16_t*>(a.w.data);
  const int64_t pairs = a.w.cols / 2, group_ld = kRows * a.w.ld;
  const int64_t M = m1 - m0, groups = (n1 - n0 + kRows - 1) / kRows;
  // Two groups a tile only for one activation row (decode), where nothing else gives the FMAs
  // independent chains; taller tiles have them from their rows.
  const int nr_max = M == 1 ? kNR : 1;
  // Tiles of equal height (9 rows: 5 + 4, not 5 + 4 ... + 1): a short tile loads as much of W per
  // pair for fewer products.
  const int64_t m_tiles = (M + kMR - 1) / kMR, base = M / m_tiles, extra = M % m_tiles;
  // One tile reads W once: panels would only add stores and reloads of y.
  const int64_t panel = m_tiles == 1 ? pairs : kPanelPairs;
  for (int64_t g = 0; g < groups; g += nr_max) {
    const int nr = int(std::min<int64_t>(nr_max, groups - g));
    const uint16_t* wg = w + (n0 / kRows + g) * group_ld;
    const int64_t valid = n1 - (n0 + (g + nr - 1) * kRows);  // outputs of the tile's last group
    for (int64_t p0 = 0; p0 < pairs; p0 += panel) {
      const int64_t p1 = std::min(pairs, p0 + panel);
      int64_t m = 0;
      for (int64_t t = 0; t < m_tiles; ++t) {
        const int mr = int(base + (t < extra ? 1 : 0));
        // `valid` counts from the tile's last group; the tile's masks are by group from its first.
        kTiles<F16>[mr - 1][nr - 1](x + m * ldx, ldx, wg, group_ld, p0, p1, a.y + m * a.ldy + g * kRows, a.ldy,
                               valid + (nr - 1) * kRows, p0 == 0);
        m += mr;
      }
    }
  }
}

}  // namespace

// Column blocks of whole groups; up to 60 rows (12 tiles) pass a group's panel in L1.
const MatmulKernel kBf16X16{"avx2 bf16x16", bf16f32_act_row_bytes, bf16f32_prepare_row, x16_block<false>, kRows,
                            12 * kMR};
const MatmulKernel kF16X16{"avx2 f16x16", f32_act_row_bytes, f32_prepare_row, x16_block<true>, kRows, 12 * kMR};

}  // namespace dpserve::kernels::avx2

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
