// AMX matmul block for BF16_X16 weights: tdpbf16ps on 16x16 fp32 tiles. The 16-row groups of
// BF16_X16 (kernels/repack.h) are already the tiles' B operand: 16 pairs of a group (1 KiB, a
// pair of elements of 16 rows in each 64-byte line) are one B tile, loaded with a 64-byte stride.
// The prepared bf16 activation rows (zero-padded to whole 32-element chunks) are the A tiles.
//
// Eight tile registers: four accumulators C[2 row tiles][2 groups], two A and two B tiles, so a
// step of 32 K-elements loads 4 KiB of tiles for 4 tile products (32 x 32 outputs).
//
// Batch invariance: y[m, n] is one accumulator row-lane taking the 32-element chunks of K in
// order, from zero, with no panels; tdpbf16ps treats every row of A on its own, so neither the
// other rows of the tile nor the tile's height change a row's bits. Every M, including a single
// row, runs this kernel on the Amx level, so decode and prefill of one sequence agree bit for
// bit, as on the other levels.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

// GCC takes the target region as a pragma; clang (the fuzz build) ignores that pragma and needs the
// attribute on every function of the region, or a host without AMX cannot even compile the file.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the fuzz build compiles these files with clang)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2"))), apply_to = function)
#endif
#endif

#include "kernels/amx_tiles.h"

namespace dpserve::kernels::amx {

namespace {

constexpr int kRows = 16;          // rows per weight group = columns of a C tile
constexpr int64_t kChunk = 32;     // K elements per tile product (64 bytes of bf16)
constexpr int64_t kChunkElems = kChunk / 2 * kRows * 2;  // elements of a group per chunk (one B tile)

// Tiles (configure_two_row_tiles): C[i][j] (row tile i, group j) is tile 2 i + j; 4, 5: A of row
// tiles 0, 1; 6, 7: B of groups 0, 1. r0 rows in row tile 0 (1-16), r1 in row tile 1 (0: unused).

// GCC's tile intrinsics take the register number as a literal (it is pasted into the asm), so a
// tile is stored through a switch on its number.
inline void tile_store_raw(int t, float* dst, int64_t stride_bytes) {
  switch (t) {
    case 0: _tile_stored(0, dst, stride_bytes); break;
    case 1: _tile_stored(1, dst, stride_bytes); break;
    case 2: _tile_stored(2, dst, stride_bytes); break;
    default: _tile_stored(3, dst, stride_bytes); break;
  }
}

// Stores C tile t (`rows` x 16) to y (row stride ldy floats); only the first `cols` columns when
// the group is partial (through a buffer, so no column past the block is written).
inline void store_tile(int t, float* y, int64_t ldy, int rows, int cols) {
  if (cols == kRows) {
    tile_store_raw(t, y, ldy * int64_t(sizeof(float)));
    return;
  }
  alignas(64) float part[kRows * kRows];
  tile_store_raw(t, part, kRows * int64_t(sizeof(float)));
  for (int r = 0; r < rows; ++r) std::memcpy(y + r * ldy, part + r * kRows, size_t(cols) * sizeof(float));
}

// y[0:r0 + r1, 0:16 G] over every chunk of K: C tiles of one or two row tiles (x, x + 16 rows)
// by one or two groups (wg, wg + group_ld). `cols1`: valid columns of the last group.
template <bool TwoRowTiles, bool TwoGroups>
void tile_pair(const uint8_t* x, int64_t ldx, const uint16_t* wg, int64_t group_ld, int64_t chunks, float* y,
               int64_t ldy, int r0, int r1, int cols_last) {
  _tile_zero(0);
  if (TwoGroups) _tile_zero(1);
  if (TwoRowTiles) _tile_zero(2);
  if (TwoRowTiles && TwoGroups) _tile_zero(3);
  const uint8_t* x1 = x + kRows * ldx;
  const uint16_t* wg1 = wg + group_ld;
  for (int64_t c = 0; c < chunks; ++c) {
    _tile_loadd(6, wg + c * kChunkElems, 64);
    _tile_loadd(4, x + c * 64, ldx);
    _tile_dpbf16ps(0, 4, 6);
    if (TwoGroups) {
      _tile_loadd(7, wg1 + c * kChunkElems, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (TwoRowTiles) {
      _tile_loadd(5, x1 + c * 64, ldx);
      _tile_dpbf16ps(2, 5, 6);
      if (TwoGroups) _tile_dpbf16ps(3, 5, 7);
    }
  }
  const int cols0 = TwoGroups ? kRows : cols_last;
  store_tile(0, y, ldy, r0, cols0);
  if (TwoGroups) store_tile(1, y + kRows, ldy, r0, cols_last);
  if (TwoRowTiles) {
    store_tile(2, y + kRows * ldy, ldy, r1, cols0);
    if (TwoGroups) store_tile(3, y + kRows * ldy + kRows, ldy, r1, cols_last);
  }
}

// y[m0:m1, n0:n1]; n0 is a multiple of 16 (a group). Group pairs outside, row tiles inside: a
// pair's weights (32 rows x K) stay in L2 while the block's activation rows pass them.
void amx_bf16x16_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const uint8_t* x = static_cast<const uint8_t*>(a.act) + m0 * a.act_ld;
  const int64_t ldx = a.act_ld;
  const uint16_t* w = static_cast<const uint16_t*>(a.w.data);
  const int64_t group_ld = kRows * a.w.ld, chunks = a.w.cols / kChunk;
  const int64_t M = m1 - m0, groups = (n1 - n0 + kRows - 1) / kRows;
  for (int64_t g = 0; g < groups; g += 2) {
    const bool two_groups = g + 1 < groups;
    const uint16_t* wg = w + (n0 / kRows + g) * group_ld;
    const int cols_last = int(std::min<int64_t>(kRows, n1 - n0 - (g + (two_groups ? 1 : 0)) * kRows));
    for (int64_t mt = 0; mt < M; mt += 2 * kRows) {
      const int mr = int(std::min<int64_t>(2 * kRows, M - mt));
      const int r0 = std::min(mr, kRows), r1 = mr - r0;
      configure_two_row_tiles(r0, r1);
      const uint8_t* xt = x + mt * ldx;
      float* yt = a.y + mt * a.ldy + g * kRows;
      if (r1 > 0) {
        if (two_groups) tile_pair<true, true>(xt, ldx, wg, group_ld, chunks, yt, a.ldy, r0, r1, cols_last);
        else tile_pair<true, false>(xt, ldx, wg, group_ld, chunks, yt, a.ldy, r0, r1, cols_last);
      } else {
        if (two_groups) tile_pair<false, true>(xt, ldx, wg, group_ld, chunks, yt, a.ldy, r0, r1, cols_last);
        else tile_pair<false, false>(xt, ldx, wg, group_ld, chunks, yt, a.ldy, r0, r1, cols_last);
      }
    }
  }
}

}  // namespace

// Column blocks of whole group pairs; up to 128 activation rows (8 row tiles) pass a block's
// weights in L2.
const MatmulKernel kBf16X16{"amx bf16x16", bf16_act_row_bytes, bf16_prepare_row, amx_bf16x16_block, 2 * kRows, 128};

}  // namespace dpserve::kernels::amx

#if defined(__clang__)
#pragma clang attribute pop
#else
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
#endif
