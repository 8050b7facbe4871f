// Element-wise and row-wise operators of the transformer block.
//
// The Team overloads are collective (kernels/team.h): every member calls with the same
// arguments, and the call returns after a barrier once the whole output is written. How the
// work is split never changes a bit of the result.
#pragma once

#include <cstdint>

#include "kernels/team.h"

namespace dpserve {

// y = x / rms(x) * w over each of `rows` rows of length n (x may alias y).
void rmsnorm(Team& t, const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);

// out[i] = silu(gate[i]) * up[i]
void silu_mul(Team& t, const float* gate, const float* up, float* out, int64_t n);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// out[i] = gelu_tanh(gate[i]) * up[i] (GeGLU, PyTorch's tanh-approximated gelu)
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);

// x[i] = cap * tanh(x[i] / cap) for cap > 0 (logit soft-capping, Gemma 2's final logits).
void softcap(Team& t, float* x, int64_t n, float cap);

// In-place softmax of n values; returns nothing, handles -inf entries
// (exp(-inf) = 0; if every entry is -inf the result is all zeros).
void softmax(float* x, int64_t n);

// Rotary embedding of `n_heads` heads of size head_dim at one position.
// cos/sin hold rot_dim/2 values for that position. `interleaved` rotates
// adjacent pairs (x[2i], x[2i+1]) as llama2.c / Meta's original code does;
// otherwise the two halves (x[i], x[i + rot_dim/2]) as Hugging Face does.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float* cos,
          const float* sin, bool interleaved);

// y += x
void add_inplace(Team& t, float* y, const float* x, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace dpserve
