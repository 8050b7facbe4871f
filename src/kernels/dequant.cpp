#include "kernels/dequant.h"

#include <cstring>

#include "core/bf16.h"
#include "core/check.h"

namespace dpserve {

namespace {

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Q8_0: d (f16) then 32 int8.
void q8_0(const uint8_t* b, float* y) {
  const float d = f16_to_f32(load_u16(b));
  const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
  for (int i = 0; i < 32; ++i) y[i] = float(q[i]) * d;
}

// Q4_0: d (f16) then 16 bytes; byte j holds element j (low nibble) and j + 16 (high), offset by 8.
void q4_0(const uint8_t* b, float* y) {
  const float d = f16_to_f32(load_u16(b));
  const uint8_t* q = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(int(q[j] & 0x0f) - 8) * d;
    y[j + 16] = float(int(q[j] >> 4) - 8) * d;
  }
}

// The 12 scale bytes of Q4_K / Q5_K hold eight 6-bit scales and eight 6-bit mins: sub-blocks 0-3
// in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 in the nibbles of bytes
// 8-11 with their top two bits in the spare high bits of bytes 0-3 (scales) and 4-7 (mins).
void k_scale_min(int j, const uint8_t* s, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 63;
    min = s[j + 4] & 63;
  } else {
    scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: d, dmin (f16), 12 scale bytes, 128 quant bytes. Each 64 elements share 32 quant bytes:
// the first 32 elements are their low nibbles, the next 32 their high nibbles; element value is
// d * scale * q - dmin * min of its 32-element sub-block.
void q4_k(const uint8_t* b, float* y) {
  const float d = f16_to_f32(load_u16(b)), dmin = f16_to_f32(load_u16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int c = 0; c < 4; ++c, q += 32) {
    int sc, mn;
    k_scale_min(2 * c, scales, sc, mn);
    const float d1 = d * float(sc), m1 = dmin * float(mn);
    k_scale_min(2 * c + 1, scales, sc, mn);
    const float d2 = d * float(sc), m2 = dmin * float(mn);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
  }
}

// Q5_K: d, dmin, 12 scale bytes, 32 high-bit bytes, 128 low-nibble bytes. As Q4_K; the fifth bit
// of element l of sub-block s is bit s of high-bit byte l.
void q5_k(const uint8_t* b, float* y) {
  const float d = f16_to_f32(load_u16(b)), dmin = f16_to_f32(load_u16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  for (int c = 0; c < 4; ++c, ql += 32) {
    int sc, mn;
    k_scale_min(2 * c, scales, sc, mn);
    const float d1 = d * float(sc), m1 = dmin * float(mn);
    k_scale_min(2 * c + 1, scales, sc, mn);
    const float d2 = d * float(sc), m2 = dmin * float(mn);
    const int lo_bit = 2 * c, hi_bit = 2 * c + 1;
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0x0f) + (((qh[l] >> lo_bit) & 1) << 4)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (((qh[l] >> hi_bit) & 1) << 4)) - m2;
  }
}

// Q6_K: 128 low-nibble bytes, 64 high-2-bit bytes, 16 int8 scales, d (f16). Each half (128
// elements) uses 64 ql bytes, 32 qh bytes and 8 scales; element = d * scale[16-element group] *
// (6-bit quant - 32).
void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_to_f32(load_u16(b + 208));
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int g = l / 16;
      const int q1 = int((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[g]) * float(q1);
      y[l + 32] = d * float(sc[g + 2]) * float(q2);
      y[l + 64] = d * float(sc[g + 4]) * float(q3);
      y[l + 96] = d * float(sc[g + 6]) * float(q4);
    }
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(DType t) {
  switch (t) {
    case DType::Q8_0: return q8_0;
    case DType::Q4_0: return q4_0;
    case DType::Q4_K: return q4_k;
    case DType::Q5_K: return q5_k;
    case DType::Q6_K: return q6_k;
    default: return nullptr;
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, sizeof(float) * size_t(n)); return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    default: break;
  }
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  DP_CHECK(n % be == 0, "dequantize_row: {} elements are not whole {} blocks", n, dtype_name(t));
  const BlockFn f = block_fn(t);
  DP_CHECK(f, "dequantize_row: {} is read through its WeightView (scales), not alone", dtype_name(t));
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n / be; ++i) f(p + i * bb, dst + i * be);
}

float dequantize_at(DType t, const void* src, int64_t c) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(src)[c];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(src)[c]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(src)[c]);
    default: break;
  }
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  float block[256];
  DP_CHECK(block_fn(t), "dequantize_at: {} is read through its WeightView (scales), not alone", dtype_name(t));
  block_fn(t)(static_cast<const uint8_t*>(src) + c / be * bb, block);
  return block[c % be];
}

}  // namespace dpserve
