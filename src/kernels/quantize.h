// fp32 rows to llama.cpp's block formats (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), byte for byte the
// layouts dequantize_row (kernels/dequant.h) reads and GGUF files hold.
//
// Q8_0 and Q4_0 follow ggml's reference quantizers exactly (same scale, same rounding), so
// their output equals llama.cpp's bit for bit. The K types choose each sub-block's scale and
// min by a small least-squares search of our own, then quantize the scales to 6/8 bits, and
// finally give every element the code whose *decoded* value is nearest to it.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace dpserve {

// Types quantize_row can produce.
bool can_quantize(DType t);

// dst = the n elements of x (n a whole number of blocks) as blocks of type t.
void quantize_row(DType t, const float* x, void* dst, int64_t n);

}  // namespace dpserve
