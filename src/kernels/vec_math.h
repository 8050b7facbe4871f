// Internal: vectorised exp-based loops shared by the operators, dispatched on
// the CPU's kernel ISA (a polynomial exp on AVX-512 / AVX2, std::exp otherwise).
#pragma once

#include <cstdint>

#include "kernels/isa.h"

namespace dpserve {

// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]
void vec_silu_mul(const float* gate, const float* up, float* out, int64_t n);
void vec_silu_mul_isa(KernelIsa isa, const float* gate, const float* up, float* out, int64_t n);

// out[i] = gelu_tanh(gate[i]) * up[i], gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// (PyTorch's gelu approximate="tanh", Gemma's gelu_pytorch_tanh), computed as x * sigmoid(2 y).
void vec_gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);
void vec_gelu_tanh_mul_isa(KernelIsa isa, const float* gate, const float* up, float* out, int64_t n);

// gpt-oss's clamped SwiGLU: g = min(gate[i], limit), u = clamp(up[i], -limit, limit),
// out[i] = (u + 1) * g * sigmoid(1.702 g). Scalar: a few elements per routed row, beside its products.
void vec_swiglu_oai_mul(const float* gate, const float* up, float* out, int64_t n, float limit);

// x[i] = cap * tanh(x[i] / cap), cap > 0: logit soft-capping (Gemma 2), values squashed into (-cap, cap).
// The vector forms compute cap - 2 cap / (1 + exp(2 x / cap)) (absolute error ~1e-7 x cap).
void vec_softcap(float* x, int64_t n, float cap);
void vec_softcap_isa(KernelIsa isa, float* x, int64_t n, float cap);

// x[i] = exp(x[i] - shift); returns the sum of the new values.
float vec_exp_sub_sum(float* x, int64_t n, float shift);
float vec_exp_sub_sum_isa(KernelIsa isa, float* x, int64_t n, float shift);

}  // namespace dpserve
