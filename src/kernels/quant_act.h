// Activations quantized to int8, once per row, for the products with block-quantized weights.
//
// Each row of x is cut into blocks of 32 elements (for Q8_0 / Q4_0 weights) or 256 (for the K
// types: one scale per superblock, as llama.cpp's Q8_K), and each block becomes
//   d = amax / 127,  q_k = round_half_even(x_k * (127 / amax))   (|q_k| <= 127; all 0 if amax = 0)
// in fp32 with exactly these two roundings, on every ISA, so the codes of a row depend on that
// row alone and never on the code path. Alongside: the sums of the codes over each 16 and each 32
// elements, which the kernels need for the weights' offsets and mins (sum_k (w_k - 8) a_k =
// sum_k w_k a_k - 8 sum_k a_k, and so on).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "kernels/isa.h"

namespace dpserve {

// Activation block length for weights of type t (32 or 256).
int64_t act_block_elems(DType t);

class QuantActs {
 public:
  // Room for M rows of K elements in blocks of `block` (K a multiple of block); keeps capacity.
  void reset(int64_t block, int64_t M, int64_t K);

  int64_t block() const { return block_; }
  int64_t rows() const { return M_; }
  int64_t cols() const { return K_; }

  // Row m: K codes (padded with zeros to a multiple of 64), one scale per block, the sums of
  // the codes over each 32 elements (int32 and int16) and each 16 (int16).
  int8_t* q(int64_t m) { return q_.data() + m * ldq_; }
  const int8_t* q(int64_t m) const { return q_.data() + m * ldq_; }
  float* d(int64_t m) { return d_.data() + m * (K_ / block_); }
  const float* d(int64_t m) const { return d_.data() + m * (K_ / block_); }
  int32_t* sum32(int64_t m) { return s32_.data() + m * (K_ / 32); }
  const int32_t* sum32(int64_t m) const { return s32_.data() + m * (K_ / 32); }
  int16_t* sum32_i16(int64_t m) { return s32h_.data() + m * (K_ / 32); }
  const int16_t* sum32_i16(int64_t m) const { return s32h_.data() + m * (K_ / 32); }
  int16_t* sum16(int64_t m) { return s16_.data() + m * (K_ / 16); }
  const int16_t* sum16(int64_t m) const { return s16_.data() + m * (K_ / 16); }

 private:
  int64_t block_ = 32, M_ = 0, K_ = 0, ldq_ = 0;
  std::vector<int8_t> q_;
  std::vector<float> d_;
  std::vector<int32_t> s32_;
  std::vector<int16_t> s32h_, s16_;
};

// Quantizes rows [m0, m1) of x (row stride ldx) into rows [m0, m1) of `a` (reset() first).
// Every ISA gives the same bytes; `isa` only picks the code path.
void quantize_acts(KernelIsa isa, const float* x, int64_t ldx, int64_t m0, int64_t m1, QuantActs& a);

}  // namespace dpserve
