#include "model/gguf_q5_to_q8.h"

#include <cstring>

#include "core/bf16.h"
#include "core/check.h"
#include "core/dtype.h"
#include "kernels/quantize.h"

namespace dpserve {

namespace {

// Block layouts (ggml-common.h): Q5_0 {f16 d; u8 qh[4]; u8 qs[16]} 22 bytes, Q5_1 {f16 d; f16 m;
// u8 qh[4]; u8 qs[16]} 24 bytes, Q8_0 {f16 d; i8 qs[32]} 34 bytes. Element j < 16 is the low
// nibble of qs[j] with bit j of qh as its fifth bit; element j + 16 the high nibble with bit j + 16.
void codes(const uint8_t* qh_bytes, const uint8_t* qs, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);  // little-endian, as the file and every target here
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0F) | int(((qh >> j) & 1u) << 4);
    q[j + 16] = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
  }
}

f16_t load_f16(const uint8_t* p) {
  f16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

}  // namespace

void dequantize_q5_block(uint32_t type, const uint8_t* b, float* out) {
  int q[32];
  const float d = f16_to_f32(load_f16(b));
  if (type == kGgmlQ5_0) {
    codes(b + 2, b + 6, q);
    for (int j = 0; j < 32; ++j) out[j] = d * float(q[j] - 16);
  } else {
    DP_CHECK(type == kGgmlQ5_1);
    const float m = f16_to_f32(load_f16(b + 2));
    codes(b + 4, b + 8, q);
    for (int j = 0; j < 32; ++j) out[j] = d * float(q[j]) + m;
  }
}

std::vector<uint8_t> q5_to_q8_0(uint32_t type, const uint8_t* src, int64_t blocks) {
  DP_CHECK(type == kGgmlQ5_0 || type == kGgmlQ5_1);
  constexpr size_t kOut = 34;
  const size_t in = type == kGgmlQ5_0 ? 22 : 24;
  std::vector<uint8_t> out(size_t(blocks) * kOut);
  for (int64_t i = 0; i < blocks; ++i) {
    const uint8_t* b = src + size_t(i) * in;
    uint8_t* o = out.data() + size_t(i) * kOut;
    if (type == kGgmlQ5_0) {
      int q[32];
      codes(b + 2, b + 6, q);
      std::memcpy(o, b, 2);  // the same f16 scale
      for (int j = 0; j < 32; ++j) o[2 + j] = uint8_t(int8_t(q[j] - 16));
    } else {
      float v[32];
      dequantize_q5_block(type, b, v);
      quantize_row(DType::Q8_0, v, o, 32);
    }
  }
  return out;
}

}  // namespace dpserve
