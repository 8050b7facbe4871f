#include "kv/kv_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/fp8.h"

namespace dpserve {

namespace {

// The scale of a row whose largest magnitude is to map to `top` (the code's largest value), and its
// inverse. An all-zero row gets scale 0 (and, through inv = 0, codes 0); a non-finite value gives a
// non-finite scale, so the row reads back non-finite as an fp32 cache would hold it.
struct RowScale {
  float s, inv;
};
RowScale row_scale(const float* src, int64_t n, float top) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(src[i]));
  return {amax / top, amax > 0.0f ? top / amax : 0.0f};
}

}  // namespace

void kv_encode_row(KVElem e, const float* src, int64_t n, void* dst, float* scale) {
  switch (e) {
    case KVElem::kF32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case KVElem::kBF16: {
      auto* d = static_cast<bf16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case KVElem::kInt8: {
      auto* d = static_cast<int8_t*>(dst);
      const RowScale r = row_scale(src, n, 127.0f);
      for (int64_t i = 0; i < n; ++i)
        d[i] = int8_t(std::clamp(std::nearbyint(src[i] * r.inv), -127.0f, 127.0f));
      *scale = r.s;
      return;
    }
    case KVElem::kFp8E4M3:
    case KVElem::kFp8E5M2: {
      auto* d = static_cast<uint8_t*>(dst);
      const bool e4 = e == KVElem::kFp8E4M3;
      const RowScale r = row_scale(src, n, e4 ? kFp8E4M3Max : kFp8E5M2Max);
      for (int64_t i = 0; i < n; ++i)
        d[i] = e4 ? f32_to_fp8_e4m3(src[i] * r.inv).bits : f32_to_fp8_e5m2(src[i] * r.inv).bits;
      *scale = r.s;
      return;
    }
  }
}

void kv_decode_row(KVElem e, const void* src, int64_t n, float scale, float* dst) {
  switch (e) {
    case KVElem::kF32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case KVElem::kBF16: {
      const auto* s = static_cast<const bf16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case KVElem::kInt8: {
      const auto* s = static_cast<const int8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]) * scale;
      return;
    }
    case KVElem::kFp8E4M3: {
      const auto* s = static_cast<const fp8_e4m3_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp8_to_f32(s[i]) * scale;
      return;
    }
    case KVElem::kFp8E5M2: {
      const auto* s = static_cast<const fp8_e5m2_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp8_to_f32(s[i]) * scale;
      return;
    }
  }
}

}  // namespace dpserve
