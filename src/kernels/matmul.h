// Matrix products against weights: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]).
//
// W is row-major [N, K] as stored in safetensors / llama2.c files (row stride
// `ld` elements, so a column slice of a larger matrix needs no copy). x and y
// are fp32. Accumulation is fp32. For BF16 weights the activations are rounded
// to bf16 first (the products are then exact in fp32), on every code path.
//
// Batch invariance: the value of y[m, n] depends only on x[m, :] and W[n, :],
// never on M, on the other rows, or on the number of threads. The engine relies
// on this so that batching never changes a greedy output.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/isa.h"

namespace dpserve {

struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;  // N (output features)
  int64_t cols = 0;  // K (input features)
  int64_t ld = 0;    // elements between consecutive rows (>= cols; whole blocks for block types)

  // Rows [r0, r0 + n) of this matrix.
  WeightView row_slice(int64_t r0, int64_t n) const;
  // Columns [c0, c0 + n) of this matrix (strided view, no copy); on block boundaries for block types.
  WeightView col_slice(int64_t c0, int64_t n) const;
  // Element (r, c) converted to fp32.
  float at(int64_t r, int64_t c) const;
};

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) * W^T, plus bias (may be null).
// Runs on the calling thread's OpenMP team (parallel over N and M tiles).
void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy);

// matmul on one given ISA level (tests and benchmarks force each path with it);
// fails if the CPU lacks that level. Results may differ between levels in the
// last bits; within one level they are batch- and thread-invariant.
void matmul_isa(KernelIsa isa, const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias,
                float* y, int64_t ldy);

// One output of matmul_multi: y (row stride ldy) = x * w^T + bias.
struct MatmulOut {
  WeightView w;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
};

// Several products of the same activations at once (q/k/v, gate/up): the weights must share K.
// One activation packing and one parallel region per weight dtype instead of one per product;
// every element is bit-identical to a separate matmul() call.
void matmul_multi(const float* x, int64_t M, int64_t ldx, const MatmulOut* outs, int64_t n_outs);

// Copy row `r` of W into fp32 `out` (embedding lookup).
void weight_row_to_f32(const WeightView& w, int64_t r, float* out);

namespace ref {
// Straightforward scalar reference with the same rounding rules, for tests.
void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy);
}  // namespace ref

}  // namespace dpserve
