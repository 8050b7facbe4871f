// Element-wise operators vs their formulas evaluated in float64.
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>

#include "core/check.h"
#include "kernels/vec_math.h"
#include "test_util.h"

namespace dpserve {
namespace {

TEST(Ops, RmsnormMatchesFormulaInPlaceAndNot) {
  for (int64_t n : {1, 7, 33, 2049, 2051}) {
    const int64_t rows = n == 2051 ? 40 : 3;  // 40 x 2051: the multi-threaded path
    const auto x = test::random_floats(rows * n, uint32_t(n), -3.0f, 3.0f);
    const auto w = test::random_floats(n, uint32_t(n + 1));
    std::vector<float> y(rows * n), inplace = x;
    rmsnorm(x.data(), w.data(), y.data(), rows, n, 1e-5f);
    rmsnorm(inplace.data(), w.data(), inplace.data(), rows, n, 1e-5f);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
      const double inv = 1.0 / std::sqrt(ss / double(n) + 1e-5);
      for (int64_t i = 0; i < n; ++i) {
        const double want = x[r * n + i] * inv * w[i];
        ASSERT_NEAR(y[r * n + i], want, 1e-5 * std::fabs(want) + 1e-7) << "n=" << n;
        ASSERT_EQ(y[r * n + i], inplace[r * n + i]);
      }
    }
  }
}

// The order the sum of squares is taken in is part of the result (kernels/ops.cpp): 16 lanes, lane j
// taking elements j, j + 16, ... in turn, then s[j] += s[j + 8], + 4, + 2, + 1. Evaluated here one
// scalar operation at a time, each through double and rounded to float (which gives the float
// operation's own rounding for +, *, / and sqrt, and leaves nothing for the compiler to fuse).
TEST(Ops, RmsnormSumsSquaresInSixteenLanesThenATree) {
  auto f = [](double v) { return float(v); };
  // Many rows each: two orders of the tree round the same way more often than not.
  for (int64_t n : {1, 7, 16, 33, 64, 128, 2051}) {
    for (uint32_t seed = 0; seed < 64; ++seed) {
      const auto x = test::random_floats(n, uint32_t(n * 131 + seed), -3.0f, 3.0f);
      const auto w = test::random_floats(n, uint32_t(n + 8));
      float lane[16] = {};
      for (int64_t i = 0; i < n; ++i) {
        const float sq = f(double(x[i]) * double(x[i]));
        lane[i % 16] = f(double(lane[i % 16]) + double(sq));
      }
      for (int h = 8; h >= 1; h /= 2)
        for (int j = 0; j < h; ++j) lane[j] = f(double(lane[j]) + double(lane[j + h]));
      const float eps = 1e-6f;
      const float mean = f(double(lane[0]) / double(n));
      const float inv = f(1.0 / double(f(std::sqrt(double(f(double(mean) + double(eps)))))));
      std::vector<float> y(n);
      rmsnorm(x.data(), w.data(), y.data(), 1, n, eps);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(y[i], f(double(f(double(x[i]) * double(inv))) * double(w[i]))) << "n=" << n << " i=" << i;
    }
  }
}

TEST(Ops, SiluMulMatchesFormulaOnEveryIsa) {
  std::vector<float> g = test::random_floats(1001, 1, -20.0f, 20.0f);
  g[0] = -100.0f;
  g[1] = 100.0f;
  g[2] = 0.0f;
  g[3] = -87.5f;
  const auto u = test::random_floats(g.size(), 2, -2.0f, 2.0f);
  for (KernelIsa isa : test::supported_isas())
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(17), int64_t(g.size())}) {
      std::vector<float> out(n, NAN);
      vec_silu_mul_isa(isa, g.data(), u.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double want = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
        ASSERT_NEAR(out[i], want, 2e-6 * std::fabs(want) + 1e-30) << kernel_isa_name(isa) << " g=" << g[i];
      }
    }
  // Large enough for the multi-threaded split.
  const auto gb = test::random_floats(100003, 3, -20.0f, 20.0f), ub = test::random_floats(100003, 4);
  std::vector<float> out(gb.size());
  silu_mul(gb.data(), ub.data(), out.data(), int64_t(gb.size()));
  for (size_t i = 0; i < gb.size(); ++i) {
    const double want = double(gb[i]) / (1.0 + std::exp(-double(gb[i]))) * ub[i];
    ASSERT_NEAR(out[i], want, 2e-6 * std::fabs(want) + 1e-30) << i;
  }
}

// PyTorch's gelu(approximate="tanh") as written in its documentation, in double.
static double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

TEST(Ops, GeluTanhMulMatchesFormulaOnEveryIsa) {
  std::vector<float> g = test::random_floats(1001, 5, -12.0f, 12.0f);
  g[0] = -100.0f;
  g[1] = 100.0f;
  g[2] = 0.0f;
  g[3] = -10.6f;  // past where exp clamps its argument (88.3): the product is ~1e-37, as the formula's
  const auto u = test::random_floats(g.size(), 6, -2.0f, 2.0f);
  for (KernelIsa isa : test::supported_isas())
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(17), int64_t(g.size())}) {
      std::vector<float> out(n, NAN);
      vec_gelu_tanh_mul_isa(isa, g.data(), u.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double want = gelu_tanh(g[i]) * u[i];
        ASSERT_NEAR(out[i], want, 4e-6 * std::fabs(double(g[i]) * u[i]) + 1e-30) << kernel_isa_name(isa) << " g=" << g[i];
      }
    }
  std::vector<float> out(g.size());
  gelu_tanh_mul(g.data(), u.data(), out.data(), int64_t(g.size()));
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(out[i], gelu_tanh(g[i]) * u[i], 4e-6 * std::fabs(double(g[i]) * u[i]) + 1e-30) << i;
}

// Soft-capping, cap * tanh(x / cap) with std::tanh in double: within ~1e-7 x cap (the vector forms
// compute cap - 2 cap / (1 + exp(2 x / cap)), whose error is absolute), odd, saturating at +-cap.
TEST(Ops, SoftcapMatchesTanhOnEveryIsa) {
  std::vector<float> x = test::random_floats(1003, 7, -150.0f, 150.0f);
  x[0] = 0.0f;
  x[1] = 1e30f;
  x[2] = -1e30f;
  x[3] = 1e-4f;
  for (KernelIsa isa : test::supported_isas())
    for (float cap : {30.0f, 50.0f, 2.5f})
      for (int64_t n : {int64_t(1), int64_t(9), int64_t(17), int64_t(x.size())}) {
        std::vector<float> y(x.begin(), x.begin() + n);
        vec_softcap_isa(isa, y.data(), n, cap);
        for (int64_t i = 0; i < n; ++i) {
          const double want = double(cap) * std::tanh(double(x[i]) / cap);
          ASSERT_NEAR(y[i], want, 4e-7 * cap) << kernel_isa_name(isa) << " cap " << cap << " x=" << x[i];
          ASSERT_LE(std::fabs(y[i]), cap) << kernel_isa_name(isa) << " x=" << x[i];
        }
      }
  std::vector<float> y = x;
  softcap(Team::solo(), y.data(), int64_t(y.size()), 30.0f);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], 30.0 * std::tanh(double(x[i]) / 30.0), 1.2e-5) << i;
  EXPECT_THROW(softcap(Team::solo(), y.data(), 4, 0.0f), Error);
}

TEST(Ops, SoftmaxHandlesMinusInfinity) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> base = test::random_floats(37, 5, -30.0f, 30.0f);
  base[3] = base[20] = base[36] = ninf;
  std::vector<float> x = base;
  softmax(x.data(), int64_t(x.size()));
  double mx = -INFINITY, den = 0;
  for (float v : base) mx = std::max(mx, double(v));
  // The kernel subtracts the max in fp32; the reference does the same so only exp and the sum are judged.
  auto shifted = [&](float v) { return double(v - float(mx)); };
  for (float v : base) den += std::exp(shifted(v));
  double total = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(shifted(base[i])) / den;
    ASSERT_NEAR(x[i], want, 2e-6 * want + 1e-30) << i;
    total += x[i];
  }
  EXPECT_EQ(x[3], 0.0f);
  EXPECT_EQ(x[36], 0.0f);
  EXPECT_NEAR(total, 1.0, 1e-5);

  std::vector<float> all_inf(5, ninf);
  softmax(all_inf.data(), 5);
  for (float v : all_inf) EXPECT_EQ(v, 0.0f);

  // Each ISA's exp loop on its own, with -inf and odd lengths.
  for (KernelIsa isa : test::supported_isas())
    for (int64_t n : {1, 15, 37}) {
      std::vector<float> y(base.begin(), base.begin() + n);
      const float sum = vec_exp_sub_sum_isa(isa, y.data(), n, 30.0f);
      double want_sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double want = std::exp(double(base[i] - 30.0f));
        want_sum += want;
        ASSERT_NEAR(y[i], want, 3e-7 * want) << kernel_isa_name(isa) << " i=" << i;
      }
      EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << kernel_isa_name(isa);
    }
}

TEST(Ops, RopeBothStylesMatchFormula) {
  for (const auto [n_heads, head_dim, rot_dim] : {std::array<int64_t, 3>{3, 10, 10}, {3, 10, 6}, {2, 64, 64}, {2, 128, 64}}) {
    const int64_t half = rot_dim / 2;
    const double pos = 17, theta = 10000;
    std::vector<float> cs(half), sn(half);
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * std::pow(theta, -2.0 * double(i) / double(rot_dim));
      cs[i] = float(std::cos(a));
      sn[i] = float(std::sin(a));
    }
    const auto x = test::random_floats(n_heads * head_dim, 9);
    for (bool interleaved : {true, false}) {
      std::vector<float> y = x;
      rope(y.data(), n_heads, head_dim, rot_dim, cs.data(), sn.data(), interleaved);
      for (int64_t h = 0; h < n_heads; ++h) {
        const float* xh = x.data() + h * head_dim;
        const float* yh = y.data() + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          // Pair (a, b) rotated by angle i: (a cos - b sin, a sin + b cos).
          const int64_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
          EXPECT_NEAR(yh[ia], double(xh[ia]) * cs[i] - double(xh[ib]) * sn[i], 1e-6);
          EXPECT_NEAR(yh[ib], double(xh[ia]) * sn[i] + double(xh[ib]) * cs[i], 1e-6);
        }
        for (int64_t d = rot_dim; d < head_dim; ++d) EXPECT_EQ(yh[d], xh[d]) << "beyond rot_dim must be untouched";
      }
    }
  }
  std::vector<float> x(10);
  EXPECT_THROW(rope(x.data(), 1, 10, 11, x.data(), x.data(), false), Error);
}

TEST(Ops, AddInplace) {
  auto y = test::random_floats(100003, 1);
  const auto x = test::random_floats(100003, 2);
  const auto y0 = y;
  add_inplace(y.data(), x.data(), int64_t(y.size()));
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], y0[i] + x[i]);
}

}  // namespace
}  // namespace dpserve
