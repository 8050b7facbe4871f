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
  // AMX tiles (tdpbf16ps / tdpbusd): set only when the CPU has them AND the kernel granted this
  // process the tile state (Linux's ARCH_REQ_XCOMP_PERM); a tile instruction without that grant
  // is SIGILL, so a refusal means the AVX-512 kernels run instead.
  bool amx_bf16 = false;
  bool amx_int8 = false;
};

// Detected once; DPSERVE_KERNELS=portable|avx2|avx512|avx512-bf16 caps what is used (avx512 and
// avx512-bf16 keep AMX off, for A/B runs of the same binary).
const CpuFeatures& cpu_features();
const char* cpu_kernel_name();

// Why AMX is off on this CPU ("" when it is on): no tiles, the OS refused them, or DPSERVE_KERNELS.
const char* amx_unavailable_reason();

}  // namespace dpserve
