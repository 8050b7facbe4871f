// Internal: the blocks of matmul for block-quantized weights (kernels/qmatmul.h says what they
// compute) and how the driver picks one.
//
// A block is team-agnostic: it reads activation rows prepared by quantize_act_row
// (kernels/quant_act.h) and writes y[m0:m1, n0:n1] without bias (the driver's epilogue adds it).
#pragma once

#include <cstdint>

#include "kernels/isa.h"
#include "kernels/matmul.h"
#include "kernels/matmul_kernel.h"
#include "kernels/repack.h"  // AlignedBytes: the blocks' per-thread buffers

namespace dpserve::kernels {

// A block is a MatmulKernel block (kernels/matmul_kernel.h): output relative to (m0, n0), no bias.
using QBlockArgs = MatmulBlockArgs;

using QBlockFn = void (*)(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

// Row tiles of up to this many activation rows stream the weights once (GEMV, decode); more rows
// go through the register-tiled GEMM loop. Either gives the same bits.
inline constexpr int64_t kQuantGemvRows = 3;

namespace portable {
// The scalar reference (plain or repacked weights).
void qmatmul_block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx2 {
// Repacked (*_X16) weights only.
void qmatmul_block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace avx512 {
// Repacked weights only; AVX-512BW (vpmaddubsw + vpmaddwd).
void qmatmul_block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace vnni {
// Repacked weights only; AVX-512 VNNI (vpdpbusd, vpdpwssd).
void qmatmul_block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}
namespace amx {
// Repacked weights only; AMX int8 tiles (tdpbssd), the VNNI block for blocks of few rows (the same
// bits either way). Needs AMX-INT8 and VNNI.
void qmatmul_block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
// Whether weights of type t (plain or repacked) have a tile path (every quantized type).
bool qmatmul_has_tiles(DType t);
// Activation rows per block on the tile path: the group's unpacked codes are reused by them all.
inline constexpr int64_t kQuantTileMaxRows = 128;
// Prepared activation bytes of one row band past kQuantTileMaxRows rows (MatmulKernel::band_act_bytes).
inline constexpr int64_t kQuantTileBandBytes = 5 << 18;
}

// The block for weights of type t on `isa` (plain weights on a SIMD level are repacked a couple
// of groups at a time into a per-thread buffer on the way).
QBlockFn qblock_fn(KernelIsa isa, DType t);

// The matmul kernel (kernels/matmul_kernel.h) for block-quantized weights of type t on `isa`:
// activation rows prepared by quantize_act_row, blocks from qblock_fn. Null for float types.
const MatmulKernel* quant_matmul_kernel(DType t, KernelIsa isa);
}  // namespace dpserve::kernels
