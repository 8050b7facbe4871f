#include "core/cpu.h"

#include <cstdlib>
#include <string>

namespace dpserve {

static CpuFeatures detect() {
  CpuFeatures f;
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = f.avx2;  // every AVX2 CPU we target has F16C
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  std::string cap = std::getenv("DPSERVE_KERNELS") ? std::getenv("DPSERVE_KERNELS") : "";
  if (cap == "portable") f = CpuFeatures{};
  if (cap == "avx2") f.avx512f = f.avx512bw = f.avx512bf16 = f.avx512vnni = false;
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* cpu_kernel_name() {
  const auto& f = cpu_features();
  if (f.avx512bf16) return "avx512-bf16";
  if (f.avx512f) return "avx512";
  if (f.avx2 && f.fma) return "avx2";
  return "portable";
}

}  // namespace dpserve
