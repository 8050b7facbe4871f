// Internal: the register-tiled block loop shared by the SIMD matmul files.
// Included by each matmul_<isa>.cpp inside its `#pragma GCC target` region with
// a file-local Policy type, so each ISA gets its own instantiation.
//
// Policy provides: Acc (accumulator vector), XT / WT (element types of x / W),
// kChunk (K elements per step), kMaxMR / kMaxNR (largest tile), zero(),
// load_x(p) / load_w(p) (one chunk), load_x_tail(p, n) / load_w_tail(p, n)
// (first n elements, rest zero), madd(acc, xv, wv), reduce(acc), the tile
// widths kGemmNR / kGemvNR (one row tile) <= kMaxNR, and kPanel (K panel, a
// multiple of kChunk).
// Each y[m, n] is one Acc over K chunks in order, the masked tail, then
// reduce(): the same sequence in every tile shape, hence batch invariance.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <immintrin.h>

#include "kernels/matmul_kernel.h"

namespace dpserve::kernels {

// Element k of W row j is at w[j * ldw + (k / kChunk) * wcs + k % kChunk]:
// wcs = kChunk for W as stored, or a packed panel with chunks of all rows
// interleaved (ldw = kChunk, wcs = rows * kChunk).
// One register tile over K columns [k0, k1) (k0 a multiple of kChunk; k1 too
// unless it is K). The accumulators come from / go to `saved` between panels,
// which keeps the exact per-lane order of a single pass over K.
template <class P, int MR, int NR>
void tile_kernel(const typename P::XT* x, int64_t ldx, const typename P::WT* w, int64_t ldw, int64_t wcs, int64_t k0,
                 int64_t k1, int64_t K, float* saved, float* y, int64_t ldy) {
  constexpr int64_t kLanes = int64_t(sizeof(typename P::Acc) / sizeof(float));
  typename P::Acc acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      acc[i][j] = P::zero();
      if (k0 > 0) std::memcpy(&acc[i][j], saved + (i * NR + j) * kLanes, sizeof(acc[i][j]));
    }
  const int64_t kfull = std::min(k1, K / P::kChunk * P::kChunk);
  for (int64_t k = k0; k < kfull; k += P::kChunk) {
    typename P::XV xv[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = P::load_x(x + i * ldx + k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const typename P::WV wv = P::load_w(w + j * ldw + k / P::kChunk * wcs);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = P::madd(acc[i][j], xv[i], wv);
    }
  }
  if (k1 < K) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) std::memcpy(saved + (i * NR + j) * kLanes, &acc[i][j], sizeof(acc[i][j]));
    return;
  }
  if (kfull < K) {
    const int64_t rem = K - kfull;
    typename P::XV xv[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = P::load_x_tail(x + i * ldx + kfull, rem);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const typename P::WV wv = P::load_w_tail(w + j * ldw + kfull / P::kChunk * wcs, rem);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = P::madd(acc[i][j], xv[i], wv);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = P::reduce(acc[i][j]);
}

template <class P>
using TileFn = void (*)(const typename P::XT*, int64_t, const typename P::WT*, int64_t, int64_t, int64_t, int64_t,
                        int64_t, float*, float*, int64_t);

template <class P, int MR, int... NRs>
constexpr auto tile_row(std::integer_sequence<int, NRs...>) {
  return std::array<TileFn<P>, sizeof...(NRs)>{&tile_kernel<P, MR, NRs + 1>...};
}

template <class P, int... MRs>
constexpr auto tile_table(std::integer_sequence<int, MRs...>) {
  return std::array<std::array<TileFn<P>, P::kMaxNR>, sizeof...(MRs)>{
      tile_row<P, MRs + 1>(std::make_integer_sequence<int, P::kMaxNR>{})...};
}

// Prefetch part [part, part + 1) of `parts` of the cache lines of columns
// [c0, c1) of `rows` rows of W.
template <class P>
inline void prefetch_panel(const typename P::WT* w, int64_t ldw, int64_t rows, int64_t c0, int64_t c1, int64_t part,
                           int64_t parts) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(typename P::WT));
  const int64_t first = c0 / kLine, lines = (c1 + kLine - 1) / kLine - first;
  const int64_t l0 = first + lines * part / parts, l1 = first + lines * (part + 1) / parts;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t l = l0; l < l1; ++l)
      _mm_prefetch(reinterpret_cast<const char*>(w + r * ldw + l * kLine), _MM_HINT_T1);
}

// y[m0:m1, n0:n1] in register tiles of up to kMaxMR x kMaxNR. W strips
// (kGemmNR rows) outermost; each strip is walked in K panels, and every row
// tile of x passes over a panel while it sits in L1 (the tiles' accumulators
// wait in a small buffer between panels). One x tile only (decode): no panels,
// and the next strip is prefetched instead, as nothing else hides its latency.
template <class P>
void block_loop(const typename P::XT* x, int64_t ldx, const typename P::WT* w, int64_t ldw, int64_t K, float* y,
                int64_t ldy, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static constexpr auto table = tile_table<P>(std::make_integer_sequence<int, P::kMaxMR>{});
  const int64_t m_tiles = (m1 - m0 + P::kMaxMR - 1) / P::kMaxMR;
  const int nr_max = m_tiles == 1 ? P::kGemvNR : P::kGemmNR;
  const int64_t panel = m_tiles == 1 ? K : P::kPanel;
  constexpr int64_t kLanes = int64_t(sizeof(typename P::Acc) / sizeof(float));
  const int64_t tile_floats = P::kMaxMR * P::kMaxNR * kLanes;
  thread_local std::vector<float> saved_buf;
  if (m_tiles > 1 && saved_buf.size() < size_t(m_tiles * tile_floats)) saved_buf.resize(m_tiles * tile_floats);
  float* saved = saved_buf.data();
  // Several x tiles share each W panel: copy it chunk-interleaved into a
  // contiguous buffer first. W rows are often a multiple of 4 KiB apart, so
  // unpacked they all land in the same L1 sets and evict each other.
  const bool pack = m_tiles >= 3;
  thread_local std::vector<typename P::WT> packed_buf;
  const int64_t panel_chunks = (std::min(panel, K) + P::kChunk - 1) / P::kChunk;
  if (pack && packed_buf.size() < size_t(panel_chunks * P::kMaxNR * P::kChunk))
    packed_buf.resize(panel_chunks * P::kMaxNR * P::kChunk);
  for (int64_t n = n0; n < n1; n += nr_max) {
    const int nr = int(std::min<int64_t>(nr_max, n1 - n));
    for (int64_t k0 = 0; k0 < K; k0 += panel) {
      const int64_t k1 = std::min(K, k0 + panel);
      // The panel kAhead panels further on (along K, then the next strips) is
      // fetched while this one is computed, spread over the x tiles: far
      // enough ahead to cover DRAM latency when W is read only once (small M).
      constexpr int kAhead = 2;
      int64_t next_n = n, next_k0 = k0;
      for (int a = 0; a < kAhead; ++a) {
        next_k0 += panel;
        if (next_k0 >= K) next_k0 = 0, next_n += nr_max;
      }
      const int64_t next_rows = next_n < n1 ? std::min<int64_t>(nr_max, n1 - next_n) : 0;
      const int64_t next_k1 = std::min(K, next_k0 + panel);
      const typename P::WT* wp = w + n * ldw;
      int64_t wld = ldw, wcs = P::kChunk;
      if (pack) {
        typename P::WT* dst = packed_buf.data();
        for (int64_t k = k0; k < k1; k += P::kChunk) {
          const int64_t len = std::min<int64_t>(P::kChunk, k1 - k);
          for (int j = 0; j < nr; ++j, dst += P::kChunk) {
            const typename P::WT* src = w + (n + j) * ldw + k;
            if (len == P::kChunk) {
              std::memcpy(dst, src, P::kChunk * sizeof(typename P::WT));  // constant size: one vector move
            } else {
              std::memcpy(dst, src, size_t(len) * sizeof(typename P::WT));
              std::memset(dst + len, 0, size_t(P::kChunk - len) * sizeof(typename P::WT));
            }
          }
        }
        wld = P::kChunk;
        wcs = nr * P::kChunk;
        wp = packed_buf.data() - k0 / P::kChunk * wcs;  // so absolute k indexes the panel
      }
      for (int64_t m = m0, mt = 0; m < m1; m += P::kMaxMR, ++mt) {
        if (next_rows > 0) prefetch_panel<P>(w + next_n * ldw, ldw, next_rows, next_k0, next_k1, mt, m_tiles);
        const int mr = int(std::min<int64_t>(P::kMaxMR, m1 - m));
        table[mr - 1][nr - 1](x + m * ldx, ldx, wp, wld, wcs, k0, k1, K, saved + mt * tile_floats, y + (m - m0) * ldy + (n - n0),
                              ldy);
      }
    }
  }
}

}  // namespace dpserve::kernels
