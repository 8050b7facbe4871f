// Instruction-set levels the kernels are compiled for, and which one to use.
// Every level is always built; the best one the CPU supports is picked at run time.
#pragma once

namespace dpserve {

enum class KernelIsa {
  Portable,    // plain C++ (auto-vectorised for the build's baseline)
  Avx2,        // AVX2 + FMA + F16C
  Avx512,      // AVX-512 F/BW/VL (bf16 weights converted to fp32)
  Avx512Bf16,  // AVX-512 + vdpbf16ps for bf16 weights
  Amx,         // Avx512Bf16 + AMX bf16 tiles (tdpbf16ps) for bf16 weights; the rest as Avx512Bf16
};

// True when isa reads bf16 weights in the BF16_X16 layout (the load-time repack targets it).
inline bool isa_reads_bf16x16(KernelIsa isa) {
  return isa != KernelIsa::Portable;
}

// Best level of this CPU, capped by DPSERVE_KERNELS (see core/cpu.h).
KernelIsa best_kernel_isa();
bool kernel_isa_supported(KernelIsa isa);
const char* kernel_isa_name(KernelIsa isa);

// Whether this is an Intel CPU: the weight-stream prefetch defaults depend on it (kernels/matmul.h,
// kernels/qmatmul.h). Safe during static initialization.
bool cpu_is_intel();

}  // namespace dpserve
