// Internal: vectorised exp-based loops shared by the operators, dispatched on
// the CPU's kernel ISA (a polynomial exp on AVX-512 / AVX2, std::exp otherwise).
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace dpserve {

// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]
void vec_silu_mul(const float* gate, const float* up, float* out, int64_t n);
void vec_silu_mul_isa(KernelIsa isa, const float* gate, const float* up, float* out, int64_t n);

// x[i] = exp(x[i] - shift); returns the sum of the new values.
float vec_exp_sub_sum(float* x, int64_t n, float shift);
float vec_exp_sub_sum_isa(KernelIsa isa, float* x, int64_t n, float shift);

}  // namespace dpserve
