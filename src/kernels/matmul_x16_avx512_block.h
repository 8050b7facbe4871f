// Internal: the block loop the AVX-512 kernels for BF16_X16 and F16_X16 weights share
// (matmul_avx512bf16_x16.cpp: vdpbf16ps; matmul_avx512_x16.cpp: fp32 FMAs, bf16 or f16). Included inside each
// file's target region and anonymous namespace; the file gives its tiles as a table kTiles[MR - 1]
// [NR - 1] of tile<MR, NR>(x, ldx, wg, group_ld, p0, p1, y, ldy, last, first, ahead): y[0:MR, 0:16 NR]
// over pairs [p0, p1) of the NR groups at wg, wg + group_ld, ..., from zero (first) or from what y
// holds, `last` masking the last group's outputs, prefetching `ahead` pairs on when ahead > 0.
#pragma once

constexpr int kRows = 16;           // rows per group: the lanes of one accumulator
constexpr int64_t kPairElems = 32;  // 16-bit elements of one pair of a group (64 bytes: elements 2p, 2p + 1)
constexpr int kMR = 8;              // most activation rows per tile
constexpr int kNR = 3;              // groups per tile
// K panel in pairs: a tile's 3 groups over one panel (384 KiB) stay in L2 while the block's
// activation tiles pass them; typical K (<= 4096) is one panel.
constexpr int64_t kPanelPairs = 2048;

template <class XT>
using TileFn = void (*)(const XT*, int64_t, const uint16_t*, int64_t, int64_t, int64_t, float*, int64_t, __mmask16,
                        bool, int64_t);

// y[m0:m1, n0:n1] from activation rows of XT (the kernel's prepared rows); n0 is a multiple of 16
// (a group). Tiles of up to MR rows x NR groups (Tiles[mr - 1][nr - 1]).
template <class XT, int MR, int NR, const TileFn<XT>* const (&Tiles)[MR]>
void x16_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t ldx = a.act_ld / int64_t(sizeof(XT));
  const XT* x = static_cast<const XT*>(a.act) + m0 * ldx;  // row m at x + m * ldx
  const uint16_t* w = static_cast<const uint16_t*>(a.w.data);
  const int64_t pairs = a.w.cols / 2, group_ld = kRows * a.w.ld;
  const int64_t M = m1 - m0, groups = (n1 - n0 + kRows - 1) / kRows;
  // Tiles of equal height (9 rows: 5 + 4, not 8 + 1): a short tile loads as much of W per pair
  // for fewer products.
  const int64_t m_tiles = (M + MR - 1) / MR, base = M / m_tiles, extra = M % m_tiles;
  const int64_t ahead = bf16_weight_prefetch() / 64;  // in pairs: one 64-byte line of a group each
  for (int64_t g = 0; g < groups; g += NR) {
    const int nr = int(std::min<int64_t>(NR, groups - g));
    const uint16_t* wg = w + (n0 / kRows + g) * group_ld;
    const int64_t tail = n1 - (n0 + (g + nr - 1) * kRows);
    const __mmask16 last = tail >= kRows ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    for (int64_t p0 = 0; p0 < pairs; p0 += kPanelPairs) {
      const int64_t p1 = std::min(pairs, p0 + kPanelPairs);
      int64_t m = 0;
      for (int64_t t = 0; t < m_tiles; ++t) {
        const int mr = int(base + (t < extra ? 1 : 0));
        Tiles[mr - 1][nr - 1](x + m * ldx, ldx, wg, group_ld, p0, p1, a.y + m * a.ldy + g * kRows, a.ldy, last,
                              p0 == 0, t == 0 ? ahead : 0);
        m += mr;
      }
    }
  }
}
