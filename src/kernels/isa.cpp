#include "kernels/isa.h"

#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "core/check.h"
#include "core/cpu.h"

namespace dpserve {

bool kernel_isa_supported(KernelIsa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case KernelIsa::Portable: return true;
    case KernelIsa::Avx2: return f.avx2 && f.fma && f.f16c;
    case KernelIsa::Avx512: return f.avx512f && f.avx512bw && f.fma && f.f16c;
    case KernelIsa::Avx512Bf16: return f.avx512f && f.avx512bw && f.avx512bf16 && f.fma && f.f16c;
    case KernelIsa::Amx: return kernel_isa_supported(KernelIsa::Avx512Bf16) && f.amx_bf16;
  }
  return false;
}

KernelIsa best_kernel_isa() {
  static const KernelIsa best = [] {
    for (KernelIsa isa : {KernelIsa::Amx, KernelIsa::Avx512Bf16, KernelIsa::Avx512, KernelIsa::Avx2})
      if (kernel_isa_supported(isa)) return isa;
    return KernelIsa::Portable;
  }();
  return best;
}

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Portable: return "portable";
    case KernelIsa::Avx2: return "avx2";
    case KernelIsa::Avx512: return "avx512";
    case KernelIsa::Avx512Bf16: return "avx512-bf16";
    case KernelIsa::Amx: return "amx";
  }
  return "?";
}

bool cpu_is_intel() {
  static const bool intel = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") != 0;
  }();
  return intel;
}

namespace kernels {

namespace {
std::atomic<bool>& fma_products() {
  static std::atomic<bool> fma{default_bf16_fma_products()};
  return fma;
}
}  // namespace

bool default_bf16_fma_products() {
  static const bool fma = [] {
    const char* env = std::getenv("DPSERVE_BF16_PRODUCTS");
    const std::string v = env ? env : "";
    if (v.empty()) return cpu_is_intel();
    if (v != "fma" && v != "dot")
      fail("DPSERVE_BF16_PRODUCTS={} is not a choice: use fma (fp32 FMAs) or dot (vdpbf16ps), or unset it for "
           "this CPU's default",
           v);
    return v == "fma";
  }();
  return fma;
}
void set_bf16_fma_products(bool fma) { fma_products().store(fma, std::memory_order_relaxed); }
bool bf16_fma_products() { return fma_products().load(std::memory_order_relaxed); }

std::string kernels_description() {
  // Read on every CPU, so a bad DPSERVE_BF16_PRODUCTS is a start-up error on AMX and AVX2 hosts too,
  // where nothing else would read it.
  const bool fma = bf16_fma_products();
  std::string s = cpu_kernel_name();
  if (best_kernel_isa() == KernelIsa::Avx512Bf16) s += fma ? " (bf16 on fp32 FMAs)" : " (bf16 on vdpbf16ps)";
  return s;
}

}  // namespace kernels

}  // namespace dpserve
