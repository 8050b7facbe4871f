// Element-wise and row-wise operators. Plain loops the compiler vectorises;
// the large ones split over OpenMP threads (the split never changes a result,
// every element is computed the same way whatever the split).
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/check.h"
#include "kernels/vec_math.h"

namespace dpserve {

namespace {
constexpr int64_t kParallelMin = int64_t(1) << 15;  // below this, a fork/join costs more than it saves
}

void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  if (rows < 0 || n <= 0) fail("rmsnorm: bad shape {}x{}", rows, n);
  auto row = [&](int64_t r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    // 16 lanes then a tree: vectorisable without reassociation, same order always.
    float s[16] = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; ++j) s[j] += xr[i + j] * xr[i + j];
    for (int j = 0; i + j < n; ++j) s[j] += xr[i + j] * xr[i + j];
    for (int h = 8; h >= 1; h /= 2)
      for (int j = 0; j < h; ++j) s[j] += s[j + h];
    const float inv = 1.0f / std::sqrt(s[0] / float(n) + eps);
    for (int64_t k = 0; k < n; ++k) yr[k] = (xr[k] * inv) * w[k];
  };
  if (rows > 1 && rows * n >= kParallelMin) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) row(r);
  } else {
    for (int64_t r = 0; r < rows; ++r) row(r);
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) fail("silu_mul: negative n");
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (n < kParallelMin) return vec_silu_mul(gate, up, out, n);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
    vec_silu_mul(gate + i0, up + i0, out + i0, i1 - i0);
  }
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < n; ++i) x[i] = 0.0f;
    return;
  }
  const float sum = vec_exp_sub_sum(x, n, mx);
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float* cos, const float* sin,
          bool interleaved) {
  if (rot_dim > head_dim || rot_dim % 2 != 0 || rot_dim < 0)
    fail("rope: rotary dim {} must be even and <= head_dim {}", rot_dim, head_dim);
  const int64_t half = rot_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    if (interleaved) {
      for (int64_t i = 0; i < half; ++i) {
        const float a = xh[2 * i], b = xh[2 * i + 1];
        xh[2 * i] = a * cos[i] - b * sin[i];
        xh[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const float a = xh[i], b = xh[i + half];
        xh[i] = a * cos[i] - b * sin[i];
        xh[i + half] = a * sin[i] + b * cos[i];
      }
    }
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  if (n < 4 * kParallelMin) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace dpserve
