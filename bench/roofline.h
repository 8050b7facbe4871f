// Memory read bandwidth and bf16 multiply-add peak of this machine, measured on all
// OpenMP threads as the best of many short runs (robust on a shared, noisy machine),
// so benchmarks can print their figures as ratios to limits taken in the same run.
#pragma once

namespace dpserve {

double measure_read_bandwidth();  // bytes/s, streaming reads of a buffer far larger than L3
double measure_bf16_peak();       // flop/s (vdpbf16ps chains in registers); 0 without AVX-512 BF16
double measure_int8_peak();
// bf16 tile peak in flop/s (tdpbf16ps on tiles in registers, every thread); 0 where AMX is off
// (no tiles, the OS refused them, or DPSERVE_KERNELS caps below AMX: core/cpu.h).
double measure_amx_bf16_peak();       // int8 op/s (vpdpbusd chains: 2 ops per u8 x s8 product); 0 without VNNI

}  // namespace dpserve
