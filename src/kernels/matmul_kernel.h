// How a weight format plugs into matmul: a kernel is two team-agnostic functions, "prepare
// activation rows" and "compute the block y[m0:m1, n0:n1]", plus its tiling grain. The driver
// (matmul.cpp) validates, prepares each activation row once per call, splits the blocks over
// the team and applies the epilogue (bias, SwiGLU, scaling, Set/Add); find_matmul_kernel
// (matmul_dispatch.cpp) picks the kernel for (weight format, ISA, M).
//
// Contract for a kernel's block: each y[m, n] is computed by one fixed sequence of operations
// that depends only on activation row m and weight row n (never on the block bounds), so
// however the driver cuts the work, every bit of the result is the same (batch invariance).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/isa.h"
#include "kernels/matmul.h"

namespace dpserve::kernels {

struct MatmulBlockArgs {
  const void* act = nullptr;  // prepared activation row m at act + m * act_ld bytes
  int64_t act_ld = 0;
  WeightView w;
  float* y = nullptr;  // the block's output (m, n) at y[(m - m0) * ldy + (n - n0)]
  int64_t ldy = 0;
};

struct MatmulKernel {
  const char* name;
  // Bytes of one prepared row of K activations (the kernel's own format: bf16, fp32, blocks of
  // int8 with scales...). The driver adds 64 bytes of stagger between rows so rows of a power-of-
  // two length do not all map to the same L1 sets.
  int64_t (*act_row_bytes)(int64_t K);
  // Prepares one row of K fp32 activations into `dst` (act_row_bytes(K) bytes, 64-byte aligned).
  void (*prepare_row)(const float* x, int64_t K, void* dst);
  // y[m0:m1, n0:n1] = act[m0:m1] . W[n0:n1]^T (no bias), m1 - m0 <= max_rows (up to 256 with row
  // bands, below). The kernel may read back what it wrote there (partial sums between K panels).
  void (*block)(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
  int64_t n_grain;   // column blocks are multiples of this (the register tile width), except the last
  int64_t max_rows;  // most activation rows per block call
  // Row bands for M > max_rows (0: none, the row blocks of a column block make one task). The
  // driver cuts the rows into bands of whole band_row_grain rows (at most 256) whose prepared rows
  // of min(K, band_k) elements (band_k = 0: all of K) take about band_act_bytes, and gives each
  // task one band and a wide column range; block calls then get up to 256 rows. For a kernel that
  // reads K in panels of band_k elements, or whose weights cost a pass to unpack, so a band of
  // activation rows stays in L2 while the weights stream past it once.
  int64_t band_act_bytes = 0;
  int64_t band_k = 0;
  int64_t band_row_grain = 1;
  // The block passes each of its weights once for all its rows (rows inside the weights' loop), so
  // a column block need not fit L2: the driver sizes column blocks by balance alone, and several
  // jobs (an MoE layer's experts) get a few long weight streams each instead of many short ones
  // that each start cold from DRAM.
  bool streams_weights = false;
};

// The kernel for W's format on this ISA for M activation rows, or null if there is none.
const MatmulKernel* find_matmul_kernel(DType w, KernelIsa isa, int64_t M);

// BF16 activation rows for bf16 weights: rounded to nearest even, zero-padded to whole
// kBf16Pad-element chunks, so blocks only need masked loads on W.
inline constexpr int64_t kBf16Pad = 32;
int64_t bf16_act_row_bytes(int64_t K);
void bf16_prepare_row(const float* x, int64_t K, void* dst);
// fp32 activation rows holding their bf16 rounding (what the vdpbf16ps kernels multiply), for the
// bf16 kernels that broadcast fp32 into FMAs: zero-padded to whole kBf16Pad-element chunks.
int64_t bf16f32_act_row_bytes(int64_t K);
void bf16f32_prepare_row(const float* x, int64_t K, void* dst);
// fp32 activation rows (F32 / F16 weights): copied, zero-padded to whole 16-element chunks.
int64_t f32_act_row_bytes(int64_t K);
void f32_prepare_row(const float* x, int64_t K, void* dst);

// The per-ISA kernels of the float formats (matmul_<isa>.cpp).
namespace portable {
extern const MatmulKernel kF32, kF16, kBf16;
}
namespace avx2 {
extern const MatmulKernel kF32, kF16, kBf16;
extern const MatmulKernel kBf16X16;  // BF16_X16 weights (matmul_avx2_x16.cpp)
extern const MatmulKernel kF16X16;   // F16_X16 weights (matmul_avx2_x16.cpp)
}
namespace avx512 {
extern const MatmulKernel kF32, kF16, kBf16;
extern const MatmulKernel kBf16X16;  // BF16_X16 weights, fp32 FMAs (matmul_avx512_x16.cpp)
extern const MatmulKernel kF16X16;   // F16_X16 weights, fp32 FMAs (matmul_avx512_x16.cpp)
}
namespace avx512bf16 {
extern const MatmulKernel kBf16;
extern const MatmulKernel kBf16X16;  // BF16_X16 weights (matmul_avx512bf16_x16.cpp)
}
namespace amx {
extern const MatmulKernel kBf16X16;  // BF16_X16 weights on AMX tiles (matmul_amx_bf16.cpp)
}

}  // namespace dpserve::kernels
