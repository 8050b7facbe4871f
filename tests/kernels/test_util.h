// Helpers shared by the kernel tests: seeded random data and ISA lists.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cpu.h"
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
  for (KernelIsa i : {KernelIsa::Portable, KernelIsa::Avx2, KernelIsa::Avx512, KernelIsa::Avx512Bf16, KernelIsa::Amx})
    if (kernel_isa_supported(i)) out.push_back(i);
  return out;
}

// Sets kernels::bf16_fma_products() for a scope, then restores the CPU's default.
struct Bf16ProductsScope {
  explicit Bf16ProductsScope(bool fma) { kernels::set_bf16_fma_products(fma); }
  ~Bf16ProductsScope() { kernels::set_bf16_fma_products(kernels::default_bf16_fma_products()); }
  Bf16ProductsScope(const Bf16ProductsScope&) = delete;
  Bf16ProductsScope& operator=(const Bf16ProductsScope&) = delete;
};

// supported_isas() with the bf16 product choice to run each under (kernels/isa.h): both for the
// AVX-512 BF16 level, which has a kernel for each, the CPU's default for the others.
struct IsaChoice {
  KernelIsa isa;
  bool fma;
  std::string name() const {
    return std::string(kernel_isa_name(isa)) + (isa == KernelIsa::Avx512Bf16 ? (fma ? "/fma" : "/dot") : "");
  }
};
inline std::vector<IsaChoice> isa_bf16_choices() {
  std::vector<IsaChoice> out;
  for (KernelIsa i : supported_isas()) {
    if (i == KernelIsa::Avx512Bf16) {
      out.push_back({i, false});
      out.push_back({i, true});
    } else {
      out.push_back({i, kernels::default_bf16_fma_products()});
    }
  }
  return out;
}

// Tests of kernels that have an AMX form take the ISA levels in two groups, as a test parameter:
// the vector levels this CPU runs (portable up to AVX-512 BF16), and AMX alone. On a CPU without
// AMX the AMX group is empty and its tests skip, saying why (DPSERVE_SKIP_IF_NO_ISAS): the one
// skip the kernel tests allow, so a run's output shows that the tile kernels were not tested.
enum class IsaGroup { Vector, Amx };

inline std::vector<KernelIsa> isas_in(IsaGroup g) {
  std::vector<KernelIsa> out;
  for (KernelIsa i : supported_isas())
    if ((i == KernelIsa::Amx) == (g == IsaGroup::Amx)) out.push_back(i);
  return out;
}

inline std::string isa_group_name(IsaGroup g) { return g == IsaGroup::Amx ? "amx" : "vector"; }
inline void PrintTo(IsaGroup g, std::ostream* os) { *os << isa_group_name(g); }

// Bytes of a fixture file in tests/kernels/fixtures (see the README beside each set).
inline std::vector<uint8_t> read_fixture(const std::string& rel) {
  const std::string path = std::string(DPSERVE_KERNEL_FIXTURES) + "/" + rel;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing fixture " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<float> read_fixture_f32(const std::string& rel) {
  const std::vector<uint8_t> b = read_fixture(rel);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

}  // namespace dpserve::test

// In a test body: skip the test when `isas` (from isas_in) is empty, naming why AMX is off.
#define DPSERVE_SKIP_IF_NO_ISAS(isas) \
  do {                                  \
    if ((isas).empty()) GTEST_SKIP() << "AMX cases did not run: " << ::dpserve::amx_unavailable_reason(); \
  } while (0)
