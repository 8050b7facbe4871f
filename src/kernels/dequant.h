// Reference decoding of weight rows to fp32, for every DType (core/dtype.h).
//
// Scalar and straightforward: this is what the quantized kernels are tested against, and what
// the few places that need single values (embedding rows, norms stored quantized) use.
// The block layouts are GGML's; the arithmetic follows GGML's dequantize_row_* (fp32, scale
// times quant minus min), so values agree bit for bit with llama.cpp's decoders.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace dpserve {

// dst[0, n) = the first n elements of the row at `src` (n a whole number of blocks).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Element c of the row at `src`.
float dequantize_at(DType t, const void* src, int64_t c);

}  // namespace dpserve
