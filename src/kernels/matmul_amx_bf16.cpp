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

// GCC takes the target region as a pragma; clang (the sanitizer trees) ignores that pragma and needs the
// attribute on every function of the region, or a host without AMX cannot even compile the file.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
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

inline void tile_load_raw(int t, const float* src, int64_t stride_bytes) {
  switch (t) {
    case 0: _tile_loadd(0, src, stride_bytes); break;
    case 1: _tile_loadd(1, src, stride_bytes); break;
    case 2: _tile_loadd(2, src, stride_bytes); break;
    default: _tile_loadd(3, src, stride_bytes); break;
  }
}

// Loads C tile t back from what store_tile wrote (the sums of the K panels before this one); a
// partial group through a buffer, so no column past the block is read.
inline void load_tile(int t, const float* y, int64_t ldy, int rows, int cols) {
  if (cols == kRows) {
    tile_load_raw(t, y, ldy * int64_t(sizeof(float)));
    return;
  }
  alignas(64) float part[kRows * kRows] = {};
  for (int r = 0; r < rows; ++r) std::memcpy(part + r * kRows, y + r * ldy, size_t(cols) * sizeof(float));
  tile_load_raw(t, part, kRows * int64_t(sizeof(float)));
}

// Lines of weights to pull into L2 while a tile pair runs: `lines` 64-byte lines from each of p0
// and p1 (p1 null: p0 only).
struct Prefetch {
  const char* p0 = nullptr;
  const char* p1 = nullptr;
  int64_t lines = 0;
};

// y[0:r0 + r1, 0:16 G] += the chunks [0, chunks) of x and the groups: C tiles of one or two row
// tiles (x, x + 16 rows) by one or two groups (wg, wg + group_ld), started from zero (first K
// panel) or from the partial sums in y. `cols_last`: valid columns of the last group.
template <bool TwoRowTiles, bool TwoGroups>
void tile_pair(const uint8_t* x, int64_t ldx, const uint16_t* wg, int64_t group_ld, int64_t chunks, float* y,
               int64_t ldy, int r0, int r1, int cols_last, bool first_panel, const Prefetch& pf) {
  const int cols0 = TwoGroups ? kRows : cols_last;
  if (first_panel) {
    _tile_zero(0);
    if (TwoGroups) _tile_zero(1);
    if (TwoRowTiles) _tile_zero(2);
    if (TwoRowTiles && TwoGroups) _tile_zero(3);
  } else {
    load_tile(0, y, ldy, r0, cols0);
    if (TwoGroups) load_tile(1, y + kRows, ldy, r0, cols_last);
    if (TwoRowTiles) {
      load_tile(2, y + kRows * ldy, ldy, r1, cols0);
      if (TwoGroups) load_tile(3, y + kRows * ldy + kRows, ldy, r1, cols_last);
    }
  }
  const uint8_t* x1 = x + kRows * ldx;
  const uint16_t* wg1 = wg + group_ld;
  const int64_t pf_step = (pf.lines + chunks - 1) / chunks;
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t l = c * pf_step, e = std::min(pf.lines, l + pf_step); l < e; ++l) {
      _mm_prefetch(pf.p0 + l * 64, _MM_HINT_T1);
      if (pf.p1) _mm_prefetch(pf.p1 + l * 64, _MM_HINT_T1);
    }
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
  store_tile(0, y, ldy, r0, cols0);
  if (TwoGroups) store_tile(1, y + kRows, ldy, r0, cols_last);
  if (TwoRowTiles) {
    store_tile(2, y + kRows * ldy, ldy, r1, cols0);
    if (TwoGroups) store_tile(3, y + kRows * ldy + kRows, ldy, r1, cols_last);
  }
}

// K panels of this many chunks (2048 elements): a band's activation rows are read a panel at a
// time, so a band of up to 256 rows stays in L2 (1 MiB) whatever K is; between panels the
// accumulators wait in y as fp32, which they reload exactly.
constexpr int64_t kPanelChunks = 64;

// y[m0:m1, n0:n1]; n0 is a multiple of 16 (a group). K panels outermost, then group pairs, then
// row tiles: a pair's panel of weights stays in L2 while the block's activation rows pass it,
// and the next pair's panel is prefetched meanwhile (weights stream from DRAM in prefill).
void amx_bf16x16_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const uint8_t* x = static_cast<const uint8_t*>(a.act) + m0 * a.act_ld;
  const int64_t ldx = a.act_ld;
  const uint16_t* w = static_cast<const uint16_t*>(a.w.data);
  const int64_t group_ld = kRows * a.w.ld, chunks = a.w.cols / kChunk;
  const int64_t M = m1 - m0, groups = (n1 - n0 + kRows - 1) / kRows;
  const int64_t row_pairs = (M + 2 * kRows - 1) / (2 * kRows);
  const uint16_t* w0 = w + (n0 / kRows) * group_ld;
  TwoRowTileShape shape;
  for (int64_t c0 = 0; c0 < chunks; c0 += kPanelChunks) {
    const int64_t nc = std::min(kPanelChunks, chunks - c0);
    for (int64_t g = 0; g < groups; g += 2) {
      const bool two_groups = g + 1 < groups;
      const uint16_t* wg = w0 + g * group_ld + c0 * kChunkElems;
      const int cols_last = int(std::min<int64_t>(kRows, n1 - n0 - (g + (two_groups ? 1 : 0)) * kRows));
      // The weights the next tile pairs read: the next group pair's panel, or the first pair's
      // next panel; each row tile pulls its share of the lines.
      const uint16_t* next = nullptr;
      int64_t next_groups = 0, next_chunks = nc;
      if (g + 2 < groups) {
        next = wg + 2 * group_ld;
        next_groups = std::min<int64_t>(2, groups - g - 2);
      } else if (c0 + kPanelChunks < chunks) {
        next = w0 + (c0 + kPanelChunks) * kChunkElems;
        next_groups = std::min<int64_t>(2, groups);
        next_chunks = std::min(kPanelChunks, chunks - c0 - kPanelChunks);
      }
      const int64_t next_lines = next_chunks * kChunkElems * int64_t(sizeof(uint16_t)) / 64;
      const int64_t per_pair = (next_lines + row_pairs - 1) / row_pairs;
      for (int64_t mt = 0; mt < M; mt += 2 * kRows) {
        const int mr = int(std::min<int64_t>(2 * kRows, M - mt));
        const int r0 = std::min(mr, kRows), r1 = mr - r0;
        shape.set(r0, r1);
        Prefetch pf;
        if (next) {
          const int64_t l0 = std::min(next_lines, mt / (2 * kRows) * per_pair);
          pf.lines = std::min(next_lines, l0 + per_pair) - l0;
          pf.p0 = reinterpret_cast<const char*>(next) + l0 * 64;
          if (next_groups == 2) pf.p1 = reinterpret_cast<const char*>(next + group_ld) + l0 * 64;
        }
        const uint8_t* xt = x + mt * ldx + c0 * 64;
        float* yt = a.y + mt * a.ldy + g * kRows;
        const bool first = c0 == 0;
        if (r1 > 0) {
          if (two_groups) tile_pair<true, true>(xt, ldx, wg, group_ld, nc, yt, a.ldy, r0, r1, cols_last, first, pf);
          else tile_pair<true, false>(xt, ldx, wg, group_ld, nc, yt, a.ldy, r0, r1, cols_last, first, pf);
        } else {
          if (two_groups) tile_pair<false, true>(xt, ldx, wg, group_ld, nc, yt, a.ldy, r0, r1, cols_last, first, pf);
          else tile_pair<false, false>(xt, ldx, wg, group_ld, nc, yt, a.ldy, r0, r1, cols_last, first, pf);
        }
      }
    }
  }
}

}  // namespace

// Column blocks of whole group pairs; up to 128 activation rows (8 row tiles) pass a block's
// weights in L2. Past 128 rows, bands of up to 1.25 MiB of panel rows (256 rows once K >= 2048)
// by wide column ranges (kernels/matmul.cpp): the weights stream from DRAM once per band while
// the band's rows stay in L2.
const MatmulKernel kBf16X16{"amx bf16x16", bf16_act_row_bytes, bf16_prepare_row, amx_bf16x16_block, 2 * kRows, 128,
                            5 << 18, kPanelChunks * kChunk, 2 * kRows, true};

}  // namespace dpserve::kernels::amx

#if defined(__clang__)
#pragma clang attribute pop
#else
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
#endif
