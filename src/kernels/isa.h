// Instruction-set levels the kernels are compiled for, and which one to use.
// Every level is always built; the best one the CPU supports is picked at run time.
#pragma once

#include <string>

namespace dpserve {

enum class KernelIsa {
  Portable,    // plain C++ (auto-vectorised for the build's baseline)
  Avx2,        // AVX2 + FMA + F16C
  Avx512,      // AVX-512 F/BW/VL (bf16 weights converted to fp32)
  Avx512Bf16,  // AVX-512 + vdpbf16ps for bf16 weights
  Amx,         // Avx512Bf16 + AMX bf16 tiles (tdpbf16ps) for bf16 weights; the rest as Avx512Bf16
};

// True when isa reads bf16 and f16 weights in the BF16_X16 / F16_X16 layouts (the load-time repack
// targets them).
inline bool isa_reads_float_x16(KernelIsa isa) {
  return isa != KernelIsa::Portable;
}

// Best level of this CPU, capped by DPSERVE_KERNELS (see core/cpu.h).
KernelIsa best_kernel_isa();
bool kernel_isa_supported(KernelIsa isa);
const char* kernel_isa_name(KernelIsa isa);

// Whether this is an Intel CPU: the weight-stream prefetch defaults depend on it (kernels/matmul.h,
// kernels/qmatmul.h). Safe during static initialization.
bool cpu_is_intel();

namespace kernels {
// Whether bf16 products at the AVX-512 BF16 level (products with bf16 weights, and attention over a
// bf16 / int8 / fp8 KV cache) run on fp32 FMAs, the bf16 operands widened exactly, instead of
// vdpbf16ps. Intel cores issue a 512-bit vdpbf16ps about every other cycle and two FMAs a cycle
// (Emerald Rapids: 1.33 G against 5.5 G a second on one core), so FMAs do twice the products there;
// Zen 4 / 5 issue vdpbf16ps at the FMA's rate, so it does twice theirs. Default: FMAs on Intel;
// DPSERVE_BF16_PRODUCTS=fma|dot overrides it (a start-up error otherwise). The AMX level's tiles
// are not affected. Either choice gives a row the same bits whatever its batch, but not the same
// bits as the other. Process-wide; tests and benchmarks set it to run both.
bool default_bf16_fma_products();
void set_bf16_fma_products(bool fma);
bool bf16_fma_products();

// The kernels as start-up lines and /server_info name them: cpu_kernel_name() (core/cpu.h), and
// at the AVX-512 BF16 level which instruction multiplies bf16 ("avx512-bf16 (bf16 on fp32 FMAs)").
std::string kernels_description();
}  // namespace kernels

}  // namespace dpserve
