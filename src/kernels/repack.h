// The *_X16 weight layouts (core/dtype.h) and the conversions between them and GGML's blocks.
//
// The int8 kernels compute 16 output rows at once, one per 32-bit lane, with instructions that
// multiply four consecutive bytes of a lane by four broadcast activation bytes (vpdpbusd, or
// vpmaddubsw + vpmaddwd). So a group of 16 rows stores, block after block, the quants of the 16
// rows interleaved four at a time: "k-group" g of a block (elements 4g..4g+3) is 64 bytes, byte
// 4r + i being element 4g + i of row r. AVX2 reads the first or second 32 bytes (rows 0-7 or
// 8-15) of the same 64. Per-row scalars (f16 scales, 6-bit and int8 sub-block scales) are stored
// as vectors of 16, row r at index r. A group takes exactly the bytes of its 16 plain rows.
//
// Per 16-row block, in byte order:
//   Q8_0_X16 (544 B):  d[16] f16 | 8 k-groups x 64 B of (q + 128) as u8 (unsigned for vpdpbusd)
//   Q4_0_X16 (288 B):  d[16] f16 | 4 nibble chunks x 64 B
//   Q4_K_X16 (2304 B): d[16] f16 | dmin[16] f16 | 12 x 16 B scale bytes (byte s of row r at
//                      16 s + r, GGML's packing of 6-bit scales and mins) | 8 sub-blocks x
//                      4 nibble chunks x 64 B
//   Q5_K_X16 (2816 B): as Q4_K, each sub-block preceded by 64 B of fifth bits: bit g of byte
//                      4r + i is the fifth bit of element 4g + i of row r in the sub-block
//   Q6_K_X16 (3360 B): d[16] f16 | 16 x 16 B int8 scales (scale j of row r at 16 j + r) | per
//                      32 elements: 4 nibble chunks x 64 B (low four bits), 2 x 64 B of high
//                      bit pairs (bits 2t, 2t+1 of byte 4r + i of pair-vector v belong to
//                      element 4(4v + t) + i of row r)
// BF16_X16 (bf16, 2 bytes an element) interleaves 16 rows four bytes at a time too: "pair" p of
// the group (elements 2p, 2p + 1) is 64 bytes, row r's two at byte 4r. vdpbf16ps then takes one
// 64-byte load as the 16 rows' pair against a broadcast pair of activations, one accumulator lane
// per output row, and a group is one sequential stream over K.
// F16_X16 (f16, 2 bytes an element) is each group's 16 rows transposed: element k of the group
// is 32 bytes, row r's at byte 2r, so one vcvtph2ps makes it 16 fp32 lanes, a lane per row (no
// f16 instruction multiplies in fp32; pairs as in BF16_X16 would cost a shuffle a line).
// A nibble chunk c of 32 elements holds k-group 2c in its low and 2c + 1 in its high nibbles.
// Rows past the end of the matrix (the last group of a matrix whose rows are not a multiple of
// the group) are zero (scale 0 for the block types), so they read as zeros and are never stored.
#pragma once

#include <cstdint>
#include <memory>

#include "core/dtype.h"
#include "kernels/matmul.h"

namespace dpserve {

// Rows in one group of t's repacked form (16).
inline int64_t interleave_group_rows(DType t) { return dtype_row_group(dtype_interleaved(t)); }

// Rows of the matrix interleave() produces for `rows` plain rows of type t (rounded up to a group).
inline int64_t interleaved_rows(DType t, int64_t rows) {
  const int64_t g = interleave_group_rows(t);
  return (rows + g - 1) / g * g;
}

// One group: `n_rows` (<= interleave_group_rows(t)) plain rows of `cols` elements (row stride
// `ld_bytes`) at `src`, written as one group of type dtype_interleaved(t) at `dst`.
void interleave_group(DType t, const uint8_t* src, int64_t ld_bytes, int n_rows, int64_t cols, uint8_t* dst);

// Row `r` (below the group's rows) of the group at `group` (cols elements) as plain blocks of
// dtype_plain(t).
void deinterleave_row(DType t, const uint8_t* group, int r, int64_t cols, uint8_t* dst);

// 64-byte aligned bytes (the kernels' 64-byte loads then never straddle two cache lines more
// often than the layout itself makes them).
class AlignedBytes {
 public:
  AlignedBytes() = default;
  // `align`: a power of two (64 for cache lines, 2 MiB for a region huge pages can back).
  explicit AlignedBytes(size_t n, size_t align = 64);
  uint8_t* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> p_;
  size_t n_ = 0;
};

// A whole quantized, bf16 or f16 matrix (plain type, any row stride; bf16 / f16 rows of whole
// 32-element chunks) in its repacked form: `view` has
// dtype_interleaved(w.dtype), the same rows and cols, ld = cols, and points into `bytes`.
// Groups are repacked in parallel on the calling thread's OpenMP team.
struct InterleavedWeight {
  AlignedBytes bytes;
  WeightView view;
};
InterleavedWeight interleave(const WeightView& w);

}  // namespace dpserve
