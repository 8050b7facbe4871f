// Internal: the register-tiled block loop shared by the SIMD matmul files.
// Included by each matmul_<isa>.cpp inside its `#pragma GCC target` region with
// a file-local Policy type, so each ISA gets its own instantiation.
//
// Policy provides: Acc (accumulator vector), XT / WT (element types of x / W),
// kChunk (K elements per step), kMaxMR / kMaxNR (largest tile), zero(),
// load_x(p) / load_w(p) (one chunk), load_x_tail(p, n) / load_w_tail(p, n)
// (first n elements, rest zero), madd(acc, xv, wv), reduce(acc), kPrefetch /
// prefetch(p), and the tile widths kGemmNR / kGemvNR (M = 1) <= kMaxNR.
// Each y[m, n] is one Acc over K chunks in order, the masked tail, then
// reduce(): the same sequence in every tile shape, hence batch invariance.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/matmul_impl.h"

namespace dpserve::kernels {

template <class P, int MR, int NR>
void tile_kernel(const typename P::XT* x, int64_t ldx, const typename P::WT* w, int64_t ldw, int64_t K,
                 float* y, int64_t ldy, const float* bias) {
  typename P::Acc acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = P::zero();
  const int64_t kfull = K / P::kChunk * P::kChunk;
  for (int64_t k = 0; k < kfull; k += P::kChunk) {
    typename P::XV xv[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = P::load_x(x + i * ldx + k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      if constexpr (P::kPrefetch > 0) P::prefetch(w + j * ldw + k + P::kPrefetch);
      const typename P::WV wv = P::load_w(w + j * ldw + k);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = P::madd(acc[i][j], xv[i], wv);
    }
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
using TileFn = void (*)(const typename P::XT*, int64_t, const typename P::WT*, int64_t, int64_t, float*, int64_t,
                        const float*);

template <class P, int MR, int... NRs>
constexpr auto tile_row(std::integer_sequence<int, NRs...>) {
  return std::array<TileFn<P>, sizeof...(NRs)>{&tile_kernel<P, MR, NRs + 1>...};
}

template <class P, int... MRs>
constexpr auto tile_table(std::integer_sequence<int, MRs...>) {
  return std::array<std::array<TileFn<P>, P::kMaxNR>, sizeof...(MRs)>{
      tile_row<P, MRs + 1>(std::make_integer_sequence<int, P::kMaxNR>{})...};
}

// y[m0:m1, n0:n1] in register tiles of up to kMaxMR x kMaxNR; W rows outermost
// so one strip of W stays in L1 while the rows of x pass over it.
template <class P>
void block_loop(const typename P::XT* x, int64_t ldx, const typename P::WT* w, int64_t ldw, int64_t K,
                const float* bias, float* y, int64_t ldy, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  static constexpr auto table = tile_table<P>(std::make_integer_sequence<int, P::kMaxMR>{});
  const int nr_max = m1 - m0 == 1 ? P::kGemvNR : P::kGemmNR;
  for (int64_t n = n0; n < n1; n += nr_max) {
    const int nr = int(std::min<int64_t>(nr_max, n1 - n));
    for (int64_t m = m0; m < m1; m += P::kMaxMR) {
      const int mr = int(std::min<int64_t>(P::kMaxMR, m1 - m));
      table[mr - 1][nr - 1](x + m * ldx, ldx, w + n * ldw, ldw, K, y + m * ldy + n, ldy, bias ? bias + n : nullptr);
    }
  }
}

}  // namespace dpserve::kernels
