// Portable matmul block: plain C++ that the compiler vectorises for the build's
// baseline ISA. The fixed per-element order is 16 lanes over K (lane j takes
// k = 16c + j) followed by a pairwise tree over the lanes.
#include "core/bf16.h"
#include "core/check.h"
#include "kernels/matmul_impl.h"

namespace dpserve::kernels::portable {

namespace {

constexpr int kLanes = 16;

float reduce_lanes(float* s) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) s[j] += s[j + w];
  return s[0];
}

template <typename WT, typename XT, typename Conv>
float dot(const XT* x, const WT* w, int64_t k, Conv conv) {
  float s[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= k; c += kLanes)
    for (int j = 0; j < kLanes; ++j) s[j] += conv(x[c + j]) * conv(w[c + j]);
  for (int j = 0; c + j < k; ++j) s[j] += conv(x[c + j]) * conv(w[c + j]);
  return reduce_lanes(s);
}

}  // namespace

void matmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k = t.w.cols;
  for (int64_t n = n0; n < n1; ++n) {
    const float b = t.bias ? t.bias[n] : 0.0f;
    for (int64_t m = m0; m < m1; ++m) {
      float acc = 0.0f;
      switch (t.w.dtype) {
        case DType::F32: {
          const float* w = static_cast<const float*>(t.w.data) + n * t.w.ld;
          acc = dot(t.x + m * t.ldx, w, k, [](float v) { return v; });
          break;
        }
        case DType::F16: {
          const uint16_t* w = static_cast<const uint16_t*>(t.w.data) + n * t.w.ld;
          const float* x = t.x + m * t.ldx;
          float s[kLanes] = {};
          int64_t c = 0;
          for (; c + kLanes <= k; c += kLanes)
            for (int j = 0; j < kLanes; ++j) s[j] += x[c + j] * f16_to_f32(w[c + j]);
          for (int j = 0; c + j < k; ++j) s[j] += x[c + j] * f16_to_f32(w[c + j]);
          acc = reduce_lanes(s);
          break;
        }
        case DType::BF16: {
          const uint16_t* w = static_cast<const uint16_t*>(t.w.data) + n * t.w.ld;
          acc = dot(t.xb + m * t.ldxb, w, k, [](uint16_t v) { return bf16_to_f32(v); });
          break;
        }
        default: DP_CHECK(false, "float matmul block given {} weights", dtype_name(t.w.dtype));
      }
      t.y[m * t.ldy + n] = acc + b;
    }
  }
}

}  // namespace dpserve::kernels::portable
