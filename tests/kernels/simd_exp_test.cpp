// The vector exponentials of the softmaxes against std::exp in float64, and the range their
// results keep to: no subnormal result (each costs a microcode assist on Intel).
#include "kernels/simd_exp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace dpserve::kernels {
namespace {

// Every float from 0 down to -120 in steps that cross -87.3 (where the results turn 0) and the
// subnormal range below about -87.34, plus the ends a softmax meets: -inf and large negatives.
std::vector<float> nonpositive_inputs() {
  std::vector<float> x;
  for (float v = 0.0f; v > -120.0f; v -= 0.0137f) x.push_back(v);
  for (float v : {-87.29f, -87.3f, -87.31f, -87.33f, -87.336f, -87.34f, -88.0f, -100.0f, -103.9f, -1e4f, -1e30f,
                  -INFINITY})
    x.push_back(v);
  while (x.size() % 16) x.push_back(0.0f);
  return x;
}

__attribute__((target("avx512f"))) void exp512_nonpositive_all(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, exp512_nonpositive(_mm512_loadu_ps(x + i)));
}

TEST(SimdExp, NonpositiveExpIsExactlyZeroWhereItWouldBeSubnormal) {
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("exp512_nonpositive did not run: this CPU has no AVX-512F\n");
    return;
  }
  const std::vector<float> x = nonpositive_inputs();
  std::vector<float> y(x.size());
  exp512_nonpositive_all(x.data(), y.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NE(std::fpclassify(y[i]), FP_SUBNORMAL) << "exp(" << x[i] << ") = " << y[i];
    if (x[i] < -87.3f) {
      ASSERT_EQ(y[i], 0.0f) << "exp(" << x[i] << ")";
      continue;
    }
    // The fitted polynomial: ~1e-7 relative, a few ulp with rounding.
    const double want = std::exp(double(x[i]));
    ASSERT_NEAR(y[i], want, want * 1e-6) << "exp(" << x[i] << ")";
  }
}

}  // namespace
}  // namespace dpserve::kernels
