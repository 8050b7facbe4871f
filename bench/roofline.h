// Memory read bandwidth and multiply-add peaks of this machine, measured on all
// OpenMP threads as the best of many short runs (robust on a shared, noisy machine),
// so benchmarks can print their figures as ratios to limits taken in the same run.
#pragma once

namespace dpserve {

double measure_read_bandwidth();  // bytes/s, streaming reads of a buffer far larger than L3
// The same reads: `best` is measure_read_bandwidth(), the best of 16 slices of ~10 ms; `sustained`
// is all of them together, which a run of seconds (a decode) is subject to as well: interference
// from the machine's other tenants is in it, not in the best slice.
struct ReadBandwidth {
  double best = 0, sustained = 0;
};
ReadBandwidth measure_read_bandwidths();
double measure_bf16_peak();       // flop/s (vdpbf16ps chains in registers); 0 without AVX-512 BF16
// fp32 multiply-add peak in flop/s (256-bit vfmadd chains in registers): the roof of bf16 products
// on a CPU without AVX-512 BF16, which widen bf16 to fp32. 0 without AVX2 + FMA.
double measure_fma_peak();
double measure_fma512_peak();  // the same with 512-bit vfmadd chains; 0 without AVX-512F
// The roof of bf16 products here: measure_bf16_peak(), unless that is 0 or the products run on
// FMAs (fma_products: kernels::bf16_fma_products()); then measure_fma512_peak(), or
// measure_fma_peak() without AVX-512. `name` says which.
double measure_bf16_product_peak(const char** name, bool fma_products);
double measure_int8_peak();  // int8 op/s (vpdpbusd chains: 2 ops per u8 x s8 product); 0 without VNNI
// bf16 tile peak in flop/s (tdpbf16ps on tiles in registers, every thread); 0 where AMX is off
// (no tiles, the OS refused them, or DPSERVE_KERNELS caps below AMX: core/cpu.h).
double measure_amx_bf16_peak();
// flop/s of the AMX bf16 kernel's inner loop (2 x 2 tiles a step) with its operands in L1 (l2 =
// false) or in L2 (true), every thread; 0 where AMX is off.
double measure_amx_bf16_tile_loop(bool l2);

// ns an iteration of four tdpbssd on tiles in registers, of 96 independent vpdpwssd, and of both in
// one loop, on the calling thread; all 0 where AMX-INT8 is off. both_ns near tiles_ns + vectors_ns
// means the vector work waits while the tile unit multiplies (docs/kernels.md, "AMX int8 tiles").
struct AmxBesideVectors {
  double tiles_ns = 0, vectors_ns = 0, both_ns = 0;
};
AmxBesideVectors measure_amx_int8_beside_vectors();

}  // namespace dpserve
