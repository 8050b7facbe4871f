// AVX-512 BF16 matmul block for BF16_X8 weights (8-row groups, kernels/repack.h). Every y[m, n]
// is the plain kernel's sequence (matmul_avx512bf16.cpp) bit for bit: one vdpbf16ps accumulator
// over K in 32-element chunks, then the same horizontal tree. What the layout changes is how W is
// read: a group's chunks are one sequential stream (a GEMV reads each thread's share of the
// matrix front to back), the 8 rows of a register tile are contiguous (no copy into a panel
// buffer, no L1 set conflicts between rows 4 KiB apart), and the tree runs on 8 accumulators at
// once (3 instructions per output instead of 10).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")

namespace dpserve::kernels::avx512bf16 {

namespace {

constexpr int64_t kChunk = 32;                      // bf16 elements per vdpbf16ps
constexpr int kRows = 8;                            // rows per group
constexpr int64_t kGroupChunk = kRows * kChunk;     // elements of one chunk of a group
constexpr int kGemmMR = 3;                          // activation rows per GEMM tile (3 x 8 accumulators)
constexpr int64_t kPanelChunks = 64;                // GEMM K panel: 2048 elements (32 KiB of a group; 32 and 128 measured slower)

// The 8 sums of v[0..7], lane j holding v[j]'s: the tree of the plain kernel's reduce() (lanes
// i + i+8, then i + i+4 of those, then 0 + 2 and 1 + 3, then 0 + 1), done on several vectors at
// once by shuffles that pair the same lanes. Returns the 8 sums in lanes 0-7.
inline __m512 reduce8_steps(const __m512* v) {
  __m512 s[4], t[2];
  for (int p = 0; p < 4; ++p)  // [v2p's 8 sums | v2p+1's 8 sums]
    s[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xEE));
  for (int p = 0; p < 2; ++p)  // quad j of t[p]: the 4 sums of v[4p + j]
    t[p] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * p], s[2 * p + 1], 0x88),
                         _mm512_shuffle_f32x4(s[2 * p], s[2 * p + 1], 0xDD));
  // Quad j: the 2 sums of v[j], then the 2 sums of v[4 + j].
  return _mm512_add_ps(_mm512_shuffle_ps(t[0], t[1], 0x44), _mm512_shuffle_ps(t[0], t[1], 0xEE));
}

// Sums of a[0..7] and b[0..7]: lanes 0-7 and 8-15 of the result.
inline __m512 reduce16(const __m512* a, const __m512* b) {
  const __m512 ra = reduce8_steps(a), rb = reduce8_steps(b);
  // Quad j: a[j], a[4 + j], b[j], b[4 + j].
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(ra, rb, 0x88), _mm512_shuffle_ps(ra, rb, 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

// Accumulators of an MR x 8 tile over chunks [c0, c1) of one group. x rows at x + i * ldx. With
// `pf`, chunk c also prefetches the 512 bytes at pf + (c - c0) * 512 (below pf_end) into L2.
template <int MR>
inline void tile(const uint16_t* x, int64_t ldx, const uint16_t* wg, int64_t c0, int64_t c1, __m512 (&acc)[MR][kRows],
                 const char* pf = nullptr, const char* pf_end = nullptr) {
  for (int64_t c = c0; c < c1; ++c, pf += kGroupChunk * 2) {
    if (pf < pf_end)
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    __m512bh xv[MR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) xv[i] = (__m512bh)_mm512_loadu_si512(x + i * ldx + c * kChunk);
    const uint16_t* wc = wg + c * kGroupChunk;
#pragma GCC unroll 8
    for (int j = 0; j < kRows; ++j) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(wc + j * kChunk);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
    }
  }
}

// One MR x 8 tile over chunks [c0, c1) of the group at wg: the accumulators start at zero (c0 == 0)
// or from `saved`, and end in `saved` (c1 < chunks) or as sums in y (`rows` valid columns).
template <int MR>
void run_tile(const uint16_t* x, int64_t ldx, const uint16_t* wg, int64_t c0, int64_t c1, int64_t chunks,
              float* saved, float* y, int64_t ldy, int rows, const char* pf, const char* pf_end) {
  __m512 acc[MR][kRows];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < kRows; ++j)
      acc[i][j] = c0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(saved + (i * kRows + j) * 16);
  tile<MR>(x, ldx, wg, c0, c1, acc, pf, pf_end);
  if (c1 < chunks) {
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < kRows; ++j) _mm512_storeu_ps(saved + (i * kRows + j) * 16, acc[i][j]);
    return;
  }
  const __mmask16 valid = __mmask16((1u << rows) - 1);
  for (int i = 0; i + 1 < MR; i += 2) {
    const __m512 s = reduce16(acc[i], acc[i + 1]);
    _mm512_mask_storeu_ps(y + i * ldy, valid, s);
    _mm512_mask_storeu_ps(y + (i + 1) * ldy, valid, _mm512_shuffle_f32x4(s, s, 0x4E));
  }
  if (MR % 2) _mm512_mask_storeu_ps(y + (MR - 1) * ldy, valid, reduce16(acc[MR - 1], acc[MR - 1]));
}

// One activation row (decode): each group front to back as one stream, its 8 sums stored.
void gemv(const uint16_t* x, const uint16_t* w, int64_t group_ld, int64_t chunks, int64_t n0, int64_t n1, float* y) {
  for (int64_t n = n0; n < n1; n += kRows) {
    const uint16_t* wg = w + (n / kRows) * group_ld;
    __m512 acc[1][kRows];
#pragma GCC unroll 8
    for (int j = 0; j < kRows; ++j) acc[0][j] = _mm512_setzero_ps();
    tile<1>(x, 0, wg, 0, chunks, acc);
    const int rows = int(std::min<int64_t>(kRows, n1 - n));
    _mm512_mask_storeu_ps(y + (n - n0), __mmask16((1u << rows) - 1), reduce16(acc[0], acc[0]));
  }
}

using TileFn = void (*)(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, int64_t, float*, float*, int64_t,
                        int, const char*, const char*);
constexpr TileFn kTiles[kGemmMR] = {&run_tile<1>, &run_tile<2>, &run_tile<3>};

// y[m0:m1, n0:n1]; n0 is a multiple of 8 (the kernel's grain).
void bf16x8_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const uint16_t* x = static_cast<const uint16_t*>(a.act);  // row m at x + m * ldx
  const int64_t ldx = a.act_ld / 2;
  const uint16_t* w = static_cast<const uint16_t*>(a.w.data);
  const int64_t chunks = a.w.cols / kChunk, group_ld = kRows * a.w.ld;
  const int64_t M = m1 - m0, m_tiles = (M + kGemmMR - 1) / kGemmMR;
  if (M == 1) return gemv(x + m0 * ldx, w, group_ld, chunks, n0, n1, a.y);
  // One activation tile (decode): each group is read once, front to back, with no panels. More:
  // every tile passes over a panel of the group while it sits in L1, the accumulators waiting in
  // `saved` between panels (which keeps each lane's order over K).
  const int64_t panel = m_tiles == 1 ? chunks : kPanelChunks;
  thread_local std::vector<float> saved_buf;
  if (m_tiles > 1 && saved_buf.size() < size_t(m_tiles * kGemmMR * kRows * 16))
    saved_buf.resize(size_t(m_tiles * kGemmMR * kRows * 16));
  float* saved = saved_buf.data();
  for (int64_t n = n0; n < n1; n += kRows) {
    const uint16_t* wg = w + (n / kRows) * group_ld;
    const int rows = int(std::min<int64_t>(kRows, n1 - n));
    for (int64_t c0 = 0; c0 < chunks; c0 += panel) {
      const int64_t c1 = std::min(chunks, c0 + panel);
      // The next panel (of this group, else the next group's first) is fetched into L2 while the
      // first tile passes over this one, a chunk's worth per chunk: it comes from L3 or DRAM, and
      // with few tiles per panel the hardware prefetcher does not run far enough ahead. Spread
      // over the loop, not issued at once: a burst of hundreds of prefetches held up the loads
      // (M = 4 expert products: 11 % of a decode profile in the loop issuing them). (One tile, a
      // GEMV, reads each group as one stream, which the hardware prefetcher follows best alone.)
      const char* next = nullptr;
      int64_t next_bytes = 0;
      if (m_tiles > 1) {
        if (c1 < chunks) {
          next = reinterpret_cast<const char*>(wg + c1 * kGroupChunk);
          next_bytes = (std::min(chunks, c1 + panel) - c1) * kGroupChunk * 2;
        } else if (n + kRows < n1) {
          next = reinterpret_cast<const char*>(wg + group_ld);
          next_bytes = std::min(chunks, panel) * kGroupChunk * 2;
        }
      }
      for (int64_t mt = 0; mt < m_tiles; ++mt) {
        const int64_t m = m0 + mt * kGemmMR;
        const int mr = int(std::min<int64_t>(kGemmMR, m1 - m));
        kTiles[mr - 1](x + m * ldx, ldx, wg, c0, c1, chunks, saved + mt * kGemmMR * kRows * 16,
                       a.y + (m - m0) * a.ldy + (n - n0), a.ldy, rows, mt == 0 ? next : nullptr,
                       mt == 0 ? next + next_bytes : nullptr);
      }
    }
  }
}

}  // namespace

// At most 33 rows per block: 11 whole 3-row tiles (a 32-row block ended in a 2-row tile, 4.5 % of a
// 512-token prefill profile at two thirds of the 3-row tile's rate).
const MatmulKernel kBf16X8{"avx512-bf16 bf16x8", bf16_act_row_bytes, bf16_prepare_row, bf16x8_block, kRows, 11 * kGemmMR};

}  // namespace dpserve::kernels::avx512bf16

#pragma GCC pop_options
