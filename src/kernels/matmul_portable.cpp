// Portable matmul kernels: plain C++ that the compiler vectorises for the build's baseline ISA.
// The fixed per-element order is 16 lanes over K (lane j takes k = 16c + j) followed by a
// pairwise tree over the lanes.
#include "core/bf16.h"
#include "kernels/matmul_kernel.h"

namespace dpserve::kernels::portable {

namespace {

constexpr int kLanes = 16;

float reduce_lanes(float* s) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) s[j] += s[j + w];
  return s[0];
}

template <typename WT, typename XT, float (*ConvW)(WT), float (*ConvX)(XT)>
void typed_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k = a.w.cols, ldx = a.act_ld / int64_t(sizeof(XT));
  const XT* x = static_cast<const XT*>(a.act);
  for (int64_t n = n0; n < n1; ++n) {
    const WT* w = static_cast<const WT*>(a.w.data) + n * a.w.ld;
    for (int64_t m = m0; m < m1; ++m) {
      const XT* xr = x + m * ldx;
      float s[kLanes] = {};
      int64_t c = 0;
      for (; c + kLanes <= k; c += kLanes)
        for (int j = 0; j < kLanes; ++j) s[j] += ConvX(xr[c + j]) * ConvW(w[c + j]);
      for (int j = 0; c + j < k; ++j) s[j] += ConvX(xr[c + j]) * ConvW(w[c + j]);
      a.y[(m - m0) * a.ldy + (n - n0)] = reduce_lanes(s);
    }
  }
}

float as_float(float v) { return v; }
float from_f16(uint16_t v) { return f16_to_f32(v); }
float from_bf16(uint16_t v) { return bf16_to_f32(v); }

}  // namespace

const MatmulKernel kF32{"portable f32", f32_act_row_bytes, f32_prepare_row,
                        typed_block<float, float, as_float, as_float>, 8, 32};
const MatmulKernel kF16{"portable f16", f32_act_row_bytes, f32_prepare_row,
                        typed_block<uint16_t, float, from_f16, as_float>, 8, 32};
const MatmulKernel kBf16{"portable bf16", bf16_act_row_bytes, bf16_prepare_row,
                         typed_block<uint16_t, uint16_t, from_bf16, from_bf16>, 8, 32};

}  // namespace dpserve::kernels::portable
