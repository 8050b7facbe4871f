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

#include "kernels/matmul_impl.h"

namespace dpserve::kernels {

// One register tile over K columns [k0, k1) (k0 a multiple of kChunk; k1 too
// unless it is K). The accumulators come from / go to `saved` between panels,
// which keeps the exact per-lane order of a single pass over K.
template <class P, int MR, int NR>
void tile_kernel(const typename P::XT* x, int64_t ldx, const typename P::WT* w, int64_t ldw, int64_t k0, int64_t k1,
                 int64_t K, float* saved, float* y, int64_t ldy, const float* bias) {
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
      const typename P::WV wv = P::load_w(w + j * ldw + k);
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
      const typename P::WV wv = P::load_w_tail(w + j * ldw + kfull, rem);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = P::madd(acc[i][j], xv[i], wv);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = P::reduce(acc[i][j]) + (bias ? bias[j] : 0.0f);
}

template <class P>
using TileFn = void (*)(const typename P::XT*, int64_t, const typename P::WT*, int64_t, int64_t, int64_t, int64_t,
                        float*, float*, int64_t, const float*);

template <class P, int MR, int... NRs>
constexpr auto tile_row(std::integer_sequence<int, NRs...>) {
  return std::array<TileFn<P>, sizeof...(NRs)>{&tile_kernel<P, MR, NRs + 1>...};
}

template <class P, int... MRs>
constexpr auto tile_table(std::integer_sequence<int, MRs...>) {
  return std::array<std::array<TileFn<P>, P::kMaxNR>, sizeof...(MRs)>{
      tile_row<P, MRs + 1>(std::make_integer_sequence<int, P::kMaxNR>{})...};
}

// Prefetch part [part, part + 1) of `parts` of the cache lines of `rows` rows of W.
template <class P>
inline void prefetch_strip(const typename P::WT* w, int64_t ldw, int64_t rows, int64_t K, int64_t part,
                           int64_t parts) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(typename P::WT));
  const int64_t lines = (K + kLine - 1) / kLine;
  const int64_t l0 = lines * part / parts, l1 = lines * (part + 1) / parts;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t l = l0; l < l1; ++l)
      _mm_prefetch(reinterpret_cast<const char*>(w + r * ldw + l * kLine), _MM_HINT_T0);
}

// y[m0:m1, n0:n1] in register tiles of up to kMaxMR x kMaxNR. W strips
// (kGemmNR rows) outermost; each strip is walked in K panels, and every row
// tile of x passes over a panel while it sits in L1 (the tiles' accumulators
// wait in a small buffer between panels). One x tile only (decode): no panels,
// and the next strip is prefetched instead, as nothing else hides its latency.
template <class P>
void block_loop(const typename P::XT* x, int64_t ldx, const typename P::WT* w, int64_t ldw, int64_t K,
                const float* bias, float* y, int64_t ldy, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static constexpr auto table = tile_table<P>(std::make_integer_sequence<int, P::kMaxMR>{});
  const int64_t m_tiles = (m1 - m0 + P::kMaxMR - 1) / P::kMaxMR;
  const int nr_max = m_tiles == 1 ? P::kGemvNR : P::kGemmNR;
  const int64_t panel = m_tiles == 1 ? K : P::kPanel;
  constexpr int64_t kLanes = int64_t(sizeof(typename P::Acc) / sizeof(float));
  const int64_t tile_floats = P::kMaxMR * P::kMaxNR * kLanes;
  thread_local std::vector<float> saved_buf;
  if (m_tiles > 1 && saved_buf.size() < size_t(m_tiles * tile_floats)) saved_buf.resize(m_tiles * tile_floats);
  float* saved = saved_buf.data();
  for (int64_t n = n0; n < n1; n += nr_max) {
    const int nr = int(std::min<int64_t>(nr_max, n1 - n));
    if (m_tiles == 1 && n + nr < n1) prefetch_strip<P>(w + (n + nr) * ldw, ldw, std::min<int64_t>(nr_max, n1 - n - nr), K, 0, 1);
    for (int64_t k0 = 0; k0 < K; k0 += panel) {
      const int64_t k1 = std::min(K, k0 + panel);
      for (int64_t m = m0, mt = 0; m < m1; m += P::kMaxMR, ++mt) {
        const int mr = int(std::min<int64_t>(P::kMaxMR, m1 - m));
        table[mr - 1][nr - 1](x + m * ldx, ldx, w + n * ldw, ldw, k0, k1, K, saved + mt * tile_floats,
                              y + m * ldy + n, ldy, bias ? bias + n : nullptr);
      }
    }
  }
}

}  // namespace dpserve::kernels
