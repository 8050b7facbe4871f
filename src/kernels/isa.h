// Instruction-set levels the kernels are compiled for, and which one to use.
// Every level is always built; the best one the CPU supports is picked at run time.
#pragma once

namespace dpserve {

enum class KernelIsa {
  Portable,    // plain C++ (auto-vectorised for the build's baseline)
  Avx2,        // AVX2 + FMA + F16C
  Avx512,      // AVX-512 F/BW/VL (bf16 weights converted to fp32)
  Avx512Bf16,  // AVX-512 + vdpbf16ps for bf16 weights
};

// Best level of this CPU, capped by DPSERVE_KERNELS (see core/cpu.h).
KernelIsa best_kernel_isa();
bool kernel_isa_supported(KernelIsa isa);
const char* kernel_isa_name(KernelIsa isa);

}  // namespace dpserve
