// Internal: the per-ISA blocks of matmul (matmul_*.cpp) and what the driver hands them.
//
// Every block computes each y[m, n] in one fixed order over K, whatever range
// it is given, so how the driver splits the work never changes a bit.
#pragma once

#include <cstdint>

#include "kernels/matmul.h"

namespace dpserve {
class QuantActs;
}

namespace dpserve::kernels {

// For BF16 weights, activations are rounded to bf16 and each row is zero-padded
// to a multiple of kBf16Pad columns, so blocks only need masked loads on W.
inline constexpr int64_t kBf16Pad = 32;

struct MatmulTask {
  const float* x = nullptr;      // fp32 activations (F32 / F16 weights)
  int64_t ldx = 0;
  const uint16_t* xb = nullptr;  // bf16 activations (BF16 weights), padded rows
  int64_t ldxb = 0;
  const QuantActs* xq = nullptr; // int8 activations (block-quantized weights, kernels/quant_act.h)
  WeightView w;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
};

// Computes y[m0:m1, n0:n1].
using MatmulBlockFn = void (*)(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

namespace portable {
void matmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx2 {
void matmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx512 {
void matmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx512bf16 {
// BF16 weights only.
void matmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}

}  // namespace dpserve::kernels
