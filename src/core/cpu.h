// Run-time CPU feature detection, so one binary picks the best kernels.
#pragma once

namespace dpserve {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;  // vpdpbusd / vpdpwssd (the int8 kernels of quantized weights)
};

// Detected once; DPSERVE_KERNELS=portable|avx2|avx512 caps what is used.
const CpuFeatures& cpu_features();
const char* cpu_kernel_name();

}  // namespace dpserve
