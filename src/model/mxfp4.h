// MXFP4 weights (OCP microscaling FP4) as blocks the int8 kernels run: a block is 32 e2m1 codes
// (sign, 2 exponent bits, 1 mantissa bit: 0, ±0.5, ..., ±6) and one E8M0 scale byte s worth
// 2^(s - 127). Twice a code is an integer in -12..12, so a Q8_0 block with scale 2^(s - 128) (an f16
// for s in 104..143) holds the block exactly; outside that range bf16 does (8 exponent bits).
//
// Two packings of the 16 code bytes exist:
//   Pairs  (OpenAI's checkpoints, transformers): element 2k in byte k's low nibble, 2k + 1 in its high one;
//   Halves (ggml's block_mxfp4, GGUF type 39):   element k in byte k's low nibble, k + 16 in its high one.
#pragma once

#include <cstdint>
#include <string>

#include "core/bf16.h"

namespace dpserve {

enum class Mxfp4Packing { Pairs, Halves };

// n blocks: block i's 16 code bytes at codes + i * code_stride, its scale byte at scales + i * scale_stride.
struct Mxfp4Blocks {
  const uint8_t* codes;
  const uint8_t* scales;
  int64_t code_stride, scale_stride;
  Mxfp4Packing packing;
};

// The 32 values of one block.
void dequantize_mxfp4_block(const uint8_t* codes, uint8_t scale, Mxfp4Packing packing, float* out);

// Whether blocks [begin, begin + n) fit Q8_0 exactly (every scale in 104..143). A NaN scale (0xff)
// is refused, naming `what`.
bool mxfp4_fits_q8_0(const Mxfp4Blocks& b, int64_t begin, int64_t n, const std::string& what);

// Blocks [begin, begin + n) as n Q8_0 blocks (34 bytes each) at `out`; mxfp4_fits_q8_0 must hold.
void mxfp4_to_q8_0(const Mxfp4Blocks& b, int64_t begin, int64_t n, uint8_t* out);

// Blocks [begin, begin + n) as 32 * n bf16 values at `out` (exact for every scale but NaN).
void mxfp4_to_bf16(const Mxfp4Blocks& b, int64_t begin, int64_t n, bf16_t* out);

}  // namespace dpserve
