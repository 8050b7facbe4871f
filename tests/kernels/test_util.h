// Helpers shared by the kernel tests: seeded random data and ISA lists.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/isa.h"

namespace dpserve::test {

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(size_t(std::max<int64_t>(n, 0)));
  for (float& x : v) x = d(rng);
  return v;
}

// Every ISA level this CPU can run (the portable one always).
inline std::vector<KernelIsa> supported_isas() {
  std::vector<KernelIsa> out;
  for (KernelIsa i : {KernelIsa::Portable, KernelIsa::Avx2, KernelIsa::Avx512, KernelIsa::Avx512Bf16})
    if (kernel_isa_supported(i)) out.push_back(i);
  return out;
}

}  // namespace dpserve::test
