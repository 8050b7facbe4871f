#include "model/mxfp4.h"

#include <cmath>
#include <cstring>

#include "core/check.h"

namespace dpserve {

namespace {

// Twice each e2m1 code's value (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives): integers.
constexpr int8_t kFp4Twice[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// The block's 32 doubled codes in element order.
void doubled_codes(const uint8_t* codes, Mxfp4Packing packing, int8_t* out) {
  for (int k = 0; k < 16; ++k) {
    const int8_t lo = kFp4Twice[codes[k] & 0x0f], hi = kFp4Twice[codes[k] >> 4];
    if (packing == Mxfp4Packing::Pairs) {
      out[2 * k] = lo;
      out[2 * k + 1] = hi;
    } else {
      out[k] = lo;
      out[k + 16] = hi;
    }
  }
}

// The block scale of the doubled codes, 2^(s - 128).
float half_scale(uint8_t s) { return std::ldexp(1.0f, int(s) - 128); }

}  // namespace

void dequantize_mxfp4_block(const uint8_t* codes, uint8_t scale, Mxfp4Packing packing, float* out) {
  int8_t q[32];
  doubled_codes(codes, packing, q);
  const float d = half_scale(scale);
  for (int k = 0; k < 32; ++k) out[k] = float(q[k]) * d;
}

bool mxfp4_fits_q8_0(const Mxfp4Blocks& b, int64_t begin, int64_t n, const std::string& what) {
  bool fits = true;
  for (int64_t i = begin; i < begin + n; ++i) {
    const uint8_t s = b.scales[i * b.scale_stride];
    if (s == 0xff) fail("weights: {}: an MXFP4 scale is NaN (0xff)", what);
    const float d = half_scale(s);
    fits = fits && f16_to_f32(f32_to_f16(d)) == d;
  }
  return fits;
}

void mxfp4_to_q8_0(const Mxfp4Blocks& b, int64_t begin, int64_t n, uint8_t* out) {
  for (int64_t i = begin; i < begin + n; ++i, out += 34) {
    const f16_t d = f32_to_f16(half_scale(b.scales[i * b.scale_stride]));
    std::memcpy(out, &d, 2);
    doubled_codes(b.codes + i * b.code_stride, b.packing, reinterpret_cast<int8_t*>(out + 2));
  }
}

void mxfp4_to_bf16(const Mxfp4Blocks& b, int64_t begin, int64_t n, bf16_t* out) {
  float v[32];
  for (int64_t i = begin; i < begin + n; ++i) {
    dequantize_mxfp4_block(b.codes + i * b.code_stride, b.scales[i * b.scale_stride], b.packing, v);
    for (float x : v) *out++ = f32_to_bf16(x);
  }
}

}  // namespace dpserve
