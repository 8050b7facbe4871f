// How a row of K, V or MLA latent values is stored in a compact KV cache, and read back:
// fp32 as is, bf16 rounded to nearest even, int8 as round(x / s) with s = max|x| / 127, fp8 as
// x / s rounded to nearest even in the format with s = max|x| / its largest finite value (448
// for E4M3, 57344 for E5M2). One scale per row, so a row's largest element is exact up to the
// scale's own rounding.
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace dpserve {

// Writes n values as `e` at dst; for int8 / fp8 stores the row's scale at *scale (else untouched).
void kv_encode_row(KVElem e, const float* src, int64_t n, void* dst, float* scale);
// The values a row holds, as fp32 (scale: the row's int8 / fp8 scale; ignored otherwise).
void kv_decode_row(KVElem e, const void* src, int64_t n, float scale, float* dst);

}  // namespace dpserve
