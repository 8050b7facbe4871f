// Element-wise and row-wise operators. Plain loops the compiler vectorises, split over the
// team (the split never changes a result: every element is computed the same way whatever it is).
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/check.h"
#include "kernels/vec_math.h"

namespace dpserve {

namespace {

// 16 lanes then a tree: vectorisable without reassociation, the same order always. Written as
// GCC vectors (lowered to narrower ones where the build's ISA has no 512-bit registers): as plain
// arrays the compiler spilled the lanes and summed them one by one, which for a 64-element head
// (a q/k norm, once per head of every token) cost more than the squares.
using F16 = float __attribute__((vector_size(64)));
using F8 = float __attribute__((vector_size(32)));
using F4 = float __attribute__((vector_size(16)));

float sum_squares(const float* x, int64_t n) {
  F16 s = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    F16 v;
    std::memcpy(&v, x + i, sizeof v);
    s += v * v;
  }
  if (i < n) {  // the tail's lanes; the others add +0, which leaves a sum of squares unchanged
    F16 v = {};
    std::memcpy(&v, x + i, size_t(n - i) * sizeof(float));
    s += v * v;
  }
  // s[j] += s[j + 8], then + 4, + 2, + 1: the tree the lanes were always summed in.
  const F8 s8 = __builtin_shufflevector(s, s, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(s, s, 8, 9, 10, 11, 12, 13, 14, 15);
  const F4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
  const float s0 = s4[0] + s4[2], s1 = s4[1] + s4[3];
  return s0 + s1;
}

void rmsnorm_cols(const float* xr, const float* w, float* yr, int64_t n, int64_t c0, int64_t c1, float eps) {
  const float inv = 1.0f / std::sqrt(sum_squares(xr, n) / float(n) + eps);
  for (int64_t k = c0; k < c1; ++k) yr[k] = (xr[k] * inv) * w[k];
}

// One rotated pair of halves (lo and hi never overlap): written apart so the loop needs no
// run-time alias checks, which for a 64-wide head cost as much as the rotation.
void rope_halves(float* __restrict lo, float* __restrict hi, const float* __restrict cos,
                 const float* __restrict sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = lo[i], b = hi[i];
    lo[i] = a * cos[i] - b * sin[i];
    hi[i] = a * sin[i] + b * cos[i];
  }
}

void check_rmsnorm_shape(int64_t rows, int64_t n) {
  if (rows < 0 || n <= 0) fail("rmsnorm: bad shape {}x{}", rows, n);
}

// Rows [r0, r1), each whole.
void rmsnorm_rows(const float* x, const float* w, float* y, int64_t r0, int64_t r1, int64_t n, float eps) {
  for (int64_t i = r0; i < r1; ++i) rmsnorm_cols(x + i * n, w, y + i * n, n, 0, n, eps);
}

}  // namespace

void rmsnorm(Team& t, const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  check_rmsnorm_shape(rows, n);
  if (rows >= t.size() || x == y) {
    // Whole rows per member (in place, a row's sum must be read before any of it is written).
    const Range r = t.share(rows);
    rmsnorm_rows(x, w, y, r.begin, r.end, n, eps);
  } else {
    // Fewer rows than members: every member sums each row (cheap) and writes its columns.
    const Range c = t.share(n, 16);
    for (int64_t i = 0; i < rows; ++i) rmsnorm_cols(x + i * n, w, y + i * n, n, c.begin, c.end, eps);
  }
  t.barrier();
}

void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  check_rmsnorm_shape(rows, n);
  rmsnorm_rows(x, w, y, 0, rows, n, eps);
}

void silu_mul(Team& t, const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) fail("silu_mul: negative n");
  const Range r = t.share(n, 64);
  vec_silu_mul(gate + r.begin, up + r.begin, out + r.begin, r.size());
  t.barrier();
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) { silu_mul(Team::solo(), gate, up, out, n); }

void softcap(Team& t, float* x, int64_t n, float cap) {
  if (n < 0 || !(cap > 0) || std::isinf(cap)) fail("softcap: bad arguments (n {}, cap {})", n, cap);
  const Range r = t.share(n, 64);
  vec_softcap(x + r.begin, r.size(), cap);
  t.barrier();
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  if (n < 0) fail("gelu_tanh_mul: negative n");
  vec_gelu_tanh_mul(gate, up, out, n);
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
      rope_halves(xh, xh + half, cos, sin, half);
    }
  }
}

void add_inplace(Team& t, float* y, const float* x, int64_t n) {
  const Range r = t.share(n, 16);
  for (int64_t i = r.begin; i < r.end; ++i) y[i] += x[i];
  t.barrier();
}

void add_inplace(float* y, const float* x, int64_t n) { add_inplace(Team::solo(), y, x, n); }

}  // namespace dpserve
