// Activations quantized to int8, once per row, for the products with block-quantized weights.
//
// Each row of x is cut into blocks of 32 elements (for Q8_0 / Q4_0 weights) or 256 (for the K
// types: one scale per superblock, as llama.cpp's Q8_K), and each block becomes
//   d = amax / 127,  q_k = round_half_even(x_k * (127 / amax))   (|q_k| <= 127; all 0 if amax = 0)
// in fp32 with exactly these roundings, on every ISA; for 32-element blocks d is then rounded to
// f16 as llama.cpp's Q8_0 activation blocks store it (so Q8_0 / Q4_0 products match llama.cpp's).
// The codes of a row depend on that row alone and never on the code path. Alongside: the sums of
// the codes over each 16 and each 32 elements, which the kernels need for the weights' offsets and
// mins (sum_k (w_k - 8) a_k = sum_k w_k a_k - 8 sum_k a_k, and so on).
//
// A prepared row is one self-contained run of bytes (the matmul driver keeps one per activation
// row): K codes padded to a multiple of 64, then the block scales, the 32-element sums (int32,
// then int16) and the 16-element sums (int16).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "kernels/isa.h"

namespace dpserve {

// Activation block length for weights of type t (32 or 256).
int64_t act_block_elems(DType t);

// Byte offsets inside a prepared row of K elements in blocks of `block`.
struct QuantActLayout {
  int64_t block = 32, K = 0;
  int64_t d = 0, s32 = 0, s32h = 0, s16 = 0, bytes = 0;
  QuantActLayout(int64_t block, int64_t K);
};

// Bytes of one prepared row.
inline int64_t quant_act_row_bytes(int64_t block, int64_t K) { return QuantActLayout(block, K).bytes; }

// Quantizes one row of K fp32 values into `row` (quant_act_row_bytes bytes). Every ISA gives the
// same bytes; `isa` only picks the code path.
void quantize_act_row(KernelIsa isa, int64_t block, const float* x, int64_t K, void* row);

// Read access to a prepared row.
struct QuantActRow {
  const int8_t* q;
  const float* d;
  const int32_t* s32;
  const int16_t* s32h;
  const int16_t* s16;
  QuantActRow(const void* row, const QuantActLayout& L)
      : q(static_cast<const int8_t*>(row)),
        d(reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + L.d)),
        s32(reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(row) + L.s32)),
        s32h(reinterpret_cast<const int16_t*>(static_cast<const uint8_t*>(row) + L.s32h)),
        s16(reinterpret_cast<const int16_t*>(static_cast<const uint8_t*>(row) + L.s16)) {}
};

// M prepared rows, 64-byte aligned and `ld` bytes apart (a spare cache line between rows, so rows
// of a power-of-two length do not all map to the same L1 sets).
class QuantActs {
 public:
  void reset(int64_t block, int64_t M, int64_t K);
  int64_t block() const { return block_; }
  int64_t rows() const { return M_; }
  int64_t cols() const { return K_; }
  int64_t ld() const { return ld_; }
  uint8_t* row(int64_t m) { return base() + m * ld_; }
  const uint8_t* row(int64_t m) const { return const_cast<QuantActs*>(this)->base() + m * ld_; }
  QuantActRow view(int64_t m) const { return QuantActRow(row(m), QuantActLayout(block_, K_)); }

 private:
  uint8_t* base() { return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf_.data()) + 63) / 64 * 64); }
  int64_t block_ = 32, M_ = 0, K_ = 0, ld_ = 0;
  std::vector<uint8_t> buf_;
};

// Quantizes rows [m0, m1) of x (row stride ldx) into rows [m0, m1) of `a` (reset() first).
void quantize_acts(KernelIsa isa, const float* x, int64_t ldx, int64_t m0, int64_t m1, QuantActs& a);

}  // namespace dpserve
