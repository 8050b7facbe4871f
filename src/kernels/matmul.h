// Matrix products against weights: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]).
//
// W is row-major [N, K] as stored in safetensors / llama2.c / GGUF files (row stride `ld`
// elements, so a column slice of a larger matrix needs no copy), in any DType the kernels
// know. x and y are fp32; accumulation is fp32. The entry point dispatches on (weight format,
// ISA, M) to a kernel (kernels/matmul_kernel.h); callers never branch on the weight format.
// For BF16 weights the activations are rounded to bf16 first (the products are then exact in
// fp32), on every code path.
//
// Threads: the products are collective over a thread team (kernels/team.h): every member calls
// with the same arguments, does its share, and the call returns (after a barrier) once the whole
// output is written. The overloads without a Team run on the calling thread alone.
//
// Batch invariance: the value of y[m, n] depends only on x[m, :] and W[n, :], never on M, on
// the other rows, on which other products share the call, or on the number of threads. The
// engine relies on this so that batching never changes a greedy output.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/isa.h"
#include "kernels/team.h"

namespace dpserve {

// The block scales of an fp8 checkpoint's matrix (DeepSeek-V3's and Qwen3-FP8's weight_scale_inv):
// element (r, c) of the tensor is bf16(fp8[r][c] * s[(r / rows) * ld + c / cols]), the fp32 product
// rounded to bf16 as DeepSeek's fp8-to-bf16 cast (and llama.cpp's converter) round it.
struct Fp8BlockScales {
  const float* s = nullptr;
  int64_t ld = 0;              // scales per block row: ceil(the tensor's columns / cols)
  int64_t rows = 0, cols = 0;  // the elements one scale covers (128 x 128 in the published checkpoints)
};

struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;  // N (output features)
  int64_t cols = 0;  // K (input features)
  int64_t ld = 0;    // elements between consecutive rows (>= cols; whole blocks for block types)
  // F8_E4M3 only: the tensor's scales, and where this view (a slice) starts in the tensor.
  const Fp8BlockScales* fp8 = nullptr;
  int64_t row0 = 0, col0 = 0;

  // Rows [r0, r0 + n) of this matrix.
  WeightView row_slice(int64_t r0, int64_t n) const;
  // Columns [c0, c0 + n) of this matrix (strided view, no copy); on block boundaries for block types.
  WeightView col_slice(int64_t c0, int64_t n) const;
  // Element (r, c) converted to fp32.
  float at(int64_t r, int64_t c) const;
  // The bytes a product reads of it: rows of cols elements (0 for an empty view).
  int64_t bytes() const { return data ? rows * dtype_row_bytes(dtype, cols) : 0; }
};

// What a product does with each value v = x[m] . W[n] (+ bias[n]).
enum class MatmulStore {
  Set,  // y = v
  Add,  // y += v (e.g. the residual stream, or a weighted sum of experts)
};

// The activation of a gated pair's gate half.
enum class GateAct {
  Silu,      // SwiGLU (Llama, Qwen, Mistral, DeepSeek)
  GeluTanh,  // GeGLU with PyTorch's tanh-approximated gelu (Gemma)
  // gpt-oss: gate clamped to <= limit, up to [-limit, limit], then (up + 1) * gate * sigmoid(1.702 gate)
  // (MatmulJob::gate_limit).
  SwigluOai,
};

// One product of a matmul_jobs call.
struct MatmulJob {
  // Activations: row m (m < M) is x + row(m) * ldx, with row(m) = rows ? rows[m] : m.
  const float* x = nullptr;
  int64_t ldx = 0;
  int64_t M = 0;
  const int32_t* rows = nullptr;
  WeightView w;
  const float* bias = nullptr;  // [N] or null
  // Gated pair: when w_up.data is set, v = act(x . W[n] + bias[n]) * (x . W_up[n] + bias_up[n]) with
  // act = silu (SwiGLU) or gelu_tanh (gate_act), or gpt-oss's clamped form (SwigluOai, gate_limit);
  // w_up has the same shape and dtype as w.
  WeightView w_up;
  const float* bias_up = nullptr;  // [N] or null
  GateAct gate_act = GateAct::Silu;
  float gate_limit = 0;  // SwigluOai's clamp (> 0)
  // Output row of m: y + out_row(m) * ldy, out_row(m) = out_rows ? out_rows[m] : m; v is
  // multiplied by scale[m] when scale is set.
  float* y = nullptr;
  int64_t ldy = 0;
  const int32_t* out_rows = nullptr;
  const float* scale = nullptr;
  MatmulStore store = MatmulStore::Set;
};

// How the work of a matmul_jobs call may be ordered.
enum class MatmulOrder {
  Any,  // outputs of different jobs never overlap
  // Several jobs Add into the same outputs (a token's experts): all jobs have the same N, and
  // every output column block is computed by one member running the jobs in list order, so
  // each element's sum has the same order whatever the team.
  ColumnsInJobOrder,
};

// Collective: every member of t calls it with the same jobs. Jobs with the same activations
// (x, ldx, M, rows) share one preparation of them (bf16 rounding, quantization).
void matmul_jobs(Team& t, const MatmulJob* jobs, int64_t n_jobs, MatmulOrder order = MatmulOrder::Any);

// y[M, N] (row stride ldy) = x[M, K] (row stride ldx) * W^T, plus bias (may be null).
void matmul(Team& t, const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy);
void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy);

// One output of matmul_multi: y (row stride ldy) = x * w^T + bias.
struct MatmulOut {
  WeightView w;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
};

// Several products of the same activations at once (q/k/v; the weights share K, their dtypes may
// differ, as in llama.cpp's Q4_K_M mix): one activation preparation per weight format and one
// split of the work; every element is bit-identical to a separate matmul() call.
void matmul_multi(Team& t, const float* x, int64_t M, int64_t ldx, const MatmulOut* outs, int64_t n_outs);
void matmul_multi(const float* x, int64_t M, int64_t ldx, const MatmulOut* outs, int64_t n_outs);

// The same products on one given ISA level (tests and benchmarks force each path with it); fails
// if the CPU lacks that level. Results may differ between levels in the last bits; within one
// level they are batch- and thread-invariant.
void matmul_jobs_isa(KernelIsa isa, Team& t, const MatmulJob* jobs, int64_t n_jobs,
                     MatmulOrder order = MatmulOrder::Any);
void matmul_isa(KernelIsa isa, const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias,
                float* y, int64_t ldy);

namespace kernels {
// How many bytes ahead of its reads the bf16 product's first row tile prefetches each 16-row group
// of BF16_X16 weights into L2 (0: the hardware prefetchers alone). Default: 4096 on Intel, where
// the hardware prefetchers alone streamed single-stream decode at 0.80-0.82 of the read bandwidth
// and 4096 bytes took it to 0.90 (docs/benchmarks.md); 0 elsewhere (on AMD EPYC they keep up:
// 0.92-0.99). Process-wide; benchmarks set it to A/B.
int64_t default_bf16_weight_prefetch();
void set_bf16_weight_prefetch(int64_t bytes);
int64_t bf16_weight_prefetch();
// Whether bf16 weights are multiplied on fp32 FMAs at the AVX-512 BF16 level: kernels/isa.h.
}  // namespace kernels

// Copy row `r` of W into fp32 `out` (embedding lookup; F8_E4M3 rows as their bf16 values).
void weight_row_to_f32(const WeightView& w, int64_t r, float* out);

namespace ref {
// Straightforward scalar reference with the same rounding rules, for tests.
void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy);
}  // namespace ref

}  // namespace dpserve
