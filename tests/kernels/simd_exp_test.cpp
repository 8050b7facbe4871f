// The vector exponentials of the softmaxes against std::exp in float64, and the range their
// results keep to: no subnormal result (each costs a microcode assist on Intel).
#include "kernels/simd_exp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

namespace dpserve::kernels {
namespace {

// Floats from 0 down to -120 in steps of 0.0137 (crossing -87.3, where the results turn 0, and the
// subnormal range below about -87.34), the ends a softmax meets (-inf, large negatives), and for the
// full-range functions the positives up to their upper clamp.
std::vector<float> inputs(bool positive) {
  std::vector<float> x;
  for (float v = 0.0f; v > -120.0f; v -= 0.0137f) x.push_back(v);
  for (float v : {-87.29f, -87.3f, -87.31f, -87.33f, -87.336f, -87.34f, -88.0f, -100.0f, -103.9f, -1e4f, -1e30f,
                  -INFINITY})
    x.push_back(v);
  for (float v = 0.0119f; positive && v < 88.0f; v += 0.0119f) x.push_back(v);
  while (x.size() % 16) x.push_back(0.0f);
  return x;
}

__attribute__((target("avx512f"))) void exp512_all(const std::vector<float>& x, std::vector<float>& y, bool nonpositive) {
  for (size_t i = 0; i < x.size(); i += 16) {
    const __m512 v = _mm512_loadu_ps(x.data() + i);
    _mm512_storeu_ps(y.data() + i, nonpositive ? exp512_nonpositive(v) : exp512(v));
  }
}

__attribute__((target("avx2,fma"))) void exp256_all(const std::vector<float>& x, std::vector<float>& y) {
  for (size_t i = 0; i < x.size(); i += 8) _mm256_storeu_ps(y.data() + i, exp256(_mm256_loadu_ps(x.data() + i)));
}

// Within `rel` of exp(x) in float64 at or above -87.3, exactly 0 below, never subnormal.
void expect_exp(const std::vector<float>& x, const std::vector<float>& y, double rel, const char* name) {
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NE(std::fpclassify(y[i]), FP_SUBNORMAL) << name << "(" << x[i] << ") = " << y[i];
    if (x[i] < -87.3f) {
      ASSERT_EQ(y[i], 0.0f) << name << "(" << x[i] << ")";
      continue;
    }
    const double want = std::exp(double(x[i]));
    ASSERT_NEAR(y[i], want, want * rel) << name << "(" << x[i] << ")";
  }
}

TEST(SimdExp, ZeroWhereTheResultWouldBeSubnormalAndCloseToExpElsewhere) {
  if (__builtin_cpu_supports("avx512f")) {
    const std::vector<float> neg = inputs(false), all = inputs(true);
    std::vector<float> y(neg.size()), z(all.size());
    // The softmaxes' one: a fitted degree-5 polynomial, ~1e-7 relative, a few ulp with rounding.
    exp512_all(neg, y, true);
    expect_exp(neg, y, 1e-6, "exp512_nonpositive");
    exp512_all(all, z, false);
    expect_exp(all, z, 1e-6, "exp512");
  } else {
    std::printf("exp512 / exp512_nonpositive did not run: this CPU has no AVX-512F\n");
  }
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::printf("exp256 did not run: this CPU has no AVX2 / FMA\n");
    return;
  }
  const std::vector<float> all = inputs(true);
  std::vector<float> y(all.size());
  exp256_all(all, y);
  expect_exp(all, y, 1e-6, "exp256");
}

}  // namespace
}  // namespace dpserve::kernels
