// Internal: the blocks of matmul for block-quantized weights (kernels/qmatmul.h says what they
// compute) and how the driver picks one. Each computes y[m0:m1, n0:n1] from MatmulTask::xq.
#pragma once

#include <cstdint>

#include "kernels/isa.h"
#include "kernels/matmul_impl.h"

namespace dpserve::kernels {

// Row tiles of up to this many activation rows stream the weights once (GEMV, decode); more rows
// go through the register-tiled GEMM loop. Either gives the same bits.
inline constexpr int64_t kQuantGemvRows = 3;

namespace portable {
// The scalar reference (plain or repacked weights).
void qmatmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx2 {
// Repacked (*_X16) weights only.
void qmatmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx512 {
// Repacked weights only; AVX-512BW (vpmaddubsw + vpmaddwd).
void qmatmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace vnni {
// Repacked weights only; AVX-512 VNNI (vpdpbusd, vpdpwssd).
void qmatmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}

// The block for weights of type t on `isa` (plain weights on a SIMD level are repacked a few
// groups at a time into a per-thread buffer on the way).
MatmulBlockFn qmatmul_block_fn(KernelIsa isa, DType t);

}  // namespace dpserve::kernels
