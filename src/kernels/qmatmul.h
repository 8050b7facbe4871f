// Products with block-quantized weights (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K and their repacked *_X16
// forms): what every code path computes, bit for bit.
//
// matmul() (kernels/matmul.h) takes these weights like any other. The activations are quantized
// to int8 first (kernels/quant_act.h: blocks of 32 for Q8_0/Q4_0, 256 for the K types, as
// llama.cpp does). Then, for each output y[m, n], over the blocks b of the row in order, with
// integer dot products (exact) and fp32 steps (each rounded once; fma is fused):
//   Q8_0:  D = sum_k q_k a_k                           acc = fma(float(D), d_b * da_b, acc)
//   Q4_0:  D = sum_k (q_k - 8) a_k                     acc = fma(float(D), d_b * da_b, acc)
//   Q4_K, Q5_K (sub-blocks j of 32, 6-bit scale sc_j and min m_j):
//          S = sum_j sc_j sum_{k in j} q_k a_k         acc = fma(float(S), d * da_b, acc)
//          N = sum_j m_j sum_{k in j} a_k              acc = fma(float(N), -(dmin * da_b), acc)
//   Q6_K (sub-blocks j of 16, int8 scale sc_j):
//          S = sum_j sc_j sum_{k in j} (q_k - 32) a_k  acc = fma(float(S), d * da_b, acc)
// starting from acc = 0; then y = acc (+ bias[n]). d, dmin are the block's f16 scales, da_b the
// activation block's fp32 scale, a_k its int8 codes. Since nothing here depends on how rows and
// columns are tiled, on M or on the thread count, every path (the scalar reference below, AVX2,
// AVX-512, AVX-512 VNNI, AMX int8 tiles; GEMV and GEMM tiles; plain or repacked weights) gives the same bits,
// and batch invariance (matmul.h) holds.
#pragma once

#include <cstdint>

#include "kernels/matmul.h"

namespace dpserve::ref {

// The definition above, one output at a time, in plain C++ (any quantized dtype and stride).
void qmatmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y, int64_t ldy);

}  // namespace dpserve::ref

namespace dpserve::kernels {

// How many bytes ahead of its reads a product prefetches each 16-row group of repacked quantized
// weights (Q4_0 and the K types; Q8_0 only into L2: on Zen 5 its stream needs no help), and into
// which cache; 0 bytes leaves it to the hardware prefetchers. The defaults depend on the CPU, from
// single-stream decode (the K types' GEMV, docs/benchmarks.md): on AMD EPYC (Zen 5) 2048 bytes
// into L1 took it from 0.65 to 0.9 of the read bandwidth, where the hardware prefetchers fell
// behind; on an Intel Xeon (with AMX) 4096 bytes into L2 (prefetcht1) took it from 0.59-0.62 to
// 0.69-0.76, where into L1 gave 0.59-0.65 at any distance. Benchmarks set them to A/B;
// process-wide, read by every product.
int64_t default_quant_weight_prefetch();
bool default_quant_weight_prefetch_l2();
void set_quant_weight_prefetch(int64_t bytes, bool l2);
int64_t quant_weight_prefetch();
bool quant_weight_prefetch_l2();
// With the far prefetch into L2, a second one this many bytes ahead brings the lines on into L1
// (0: none). On the Intel Xeon (no AMX exposed) 512 bytes took Q4_K_M decode 1.01-1.04x faster
// in 8 of 8 alternated pairs (the Q6_K / Q5_K GEMV from DRAM 1.05-1.08x, Q8_0 within noise). Our guess
// (no hardware counters on that VM): the K-type kernels, denser in instructions a line, cover
// fewer L2 hits out of order while L2 is busy with the fills the far prefetches bring. Unused
// when the far prefetch goes into L1 already.
int64_t default_quant_weight_prefetch_near();
void set_quant_weight_prefetch_near(int64_t bytes);
int64_t quant_weight_prefetch_near();
}  // namespace dpserve::kernels
