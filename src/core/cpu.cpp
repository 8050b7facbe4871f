#include "core/cpu.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/check.h"

namespace dpserve {

namespace {

// Linux asm/prctl.h (5.16+): a process must ask for the AMX tile data state before its first tile
// instruction. XFEATURE_XTILEDATA is bit 18 of the XSAVE feature mask.
constexpr long kArchGetXcompPerm = 0x1022;
constexpr long kArchReqXcompPerm = 0x1023;
constexpr long kXfeatureXtiledata = 18;

struct Detected {
  CpuFeatures f;
  const char* amx_reason = "";
};

// CPUID.(EAX=7, ECX=0):EDX bits 22 (AMX-BF16), 24 (AMX-TILE), 25 (AMX-INT8).
void cpu_amx_bits(bool& tile, bool& bf16, bool& int8) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  tile = bf16 = int8 = false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
  bf16 = (d >> 22) & 1u;
  tile = (d >> 24) & 1u;
  int8 = (d >> 25) & 1u;
}

// Asks the kernel for the tile state once per process (the grant covers every thread, present and
// future); true when it is granted.
bool request_amx_permission() {
  if (::syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long mask = 0;
  if (::syscall(SYS_arch_prctl, kArchGetXcompPerm, &mask) != 0) return false;
  return (mask >> kXfeatureXtiledata) & 1ul;
}

Detected detect() {
  Detected r;
  CpuFeatures& f = r.f;
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = f.avx2;  // every AVX2 CPU we target has F16C
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  const std::string cap = std::getenv("DPSERVE_KERNELS") ? std::getenv("DPSERVE_KERNELS") : "";
  // A typo would otherwise run the full-speed kernels under an A/B benchmark's "capped" label.
  if (!cap.empty() && cap != "portable" && cap != "avx2" && cap != "avx512" && cap != "avx512-bf16")
    fail("DPSERVE_KERNELS={} is not a kernel level: use portable, avx2, avx512 or avx512-bf16 (or unset it for the "
         "best this CPU has)",
         cap);
  bool tile = false, bf16 = false, int8 = false;
  cpu_amx_bits(tile, bf16, int8);
  if (!tile || !(bf16 || int8)) {
    r.amx_reason = "this CPU has no AMX tiles";
  } else if (cap == "portable" || cap == "avx2" || cap == "avx512" || cap == "avx512-bf16") {
    r.amx_reason = "DPSERVE_KERNELS caps the kernels below AMX";
  } else if (!f.avx512bf16) {
    r.amx_reason = "AMX without AVX-512 BF16 is not a CPU the kernels expect";
  } else if (!request_amx_permission()) {
    r.amx_reason = "the OS refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM; Linux 5.16+ needed)";
  } else {
    f.amx_bf16 = bf16;
    f.amx_int8 = int8;
  }
  if (cap == "portable") f = CpuFeatures{};
  if (cap == "avx2") f.avx512f = f.avx512bw = f.avx512bf16 = f.avx512vnni = false;
  if (cap == "avx512") f.avx512bf16 = false;
  return r;
}

const Detected& detected() {
  static const Detected d = detect();
  return d;
}

}  // namespace

const CpuFeatures& cpu_features() { return detected().f; }

const char* amx_unavailable_reason() { return detected().amx_reason; }

const char* cpu_kernel_name() {
  const auto& f = cpu_features();
  if (f.amx_bf16) return "amx";
  if (f.avx512bf16) return "avx512-bf16";
  if (f.avx512f) return "avx512";
  if (f.avx2 && f.fma) return "avx2";
  return "portable";
}

}  // namespace dpserve
