#include "kernels/vec_math.h"

#include <cmath>

namespace dpserve {

namespace {

void silu_mul_portable(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float exp_sub_sum_portable(float* x, int64_t n, float shift) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

}  // namespace

void vec_silu_mul_isa(KernelIsa isa, const float* gate, const float* up, float* out, int64_t n) {
  silu_mul_portable(gate, up, out, n);
}

float vec_exp_sub_sum_isa(KernelIsa isa, float* x, int64_t n, float shift) {
  return exp_sub_sum_portable(x, n, shift);
}

void vec_silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  vec_silu_mul_isa(best_kernel_isa(), gate, up, out, n);
}

float vec_exp_sub_sum(float* x, int64_t n, float shift) { return vec_exp_sub_sum_isa(best_kernel_isa(), x, n, shift); }

}  // namespace dpserve
