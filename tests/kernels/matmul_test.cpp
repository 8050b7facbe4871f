// matmul on every ISA level vs a float64 product of the same rounded inputs,
// on sizes that are not multiples of any SIMD width; plus batch and thread invariance.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/check.h"
#include "test_util.h"

namespace dpserve {
namespace {

using test::random_floats;

// Weights of one dtype, stored with a row stride larger than K so strided
// access is exercised too.
struct Weights {
  std::vector<float> f32;
  std::vector<uint16_t> half;
  WeightView view;
};

Weights make_weights(DType dt, int64_t n, int64_t k, uint32_t seed) {
  Weights w;
  const int64_t ld = k + 3;
  const std::vector<float> v = random_floats(n * ld, seed);
  if (dt == DType::F32) {
    w.f32 = v;
    w.view.data = w.f32.data();
  } else {
    w.half.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (dt == DType::BF16) {
        w.half[i] = f32_to_bf16(v[i]);
      } else {
        // Round to fp16 through a value fp16 holds exactly: 11 significant bits in [-1, 1].
        const float q = std::round(v[i] * 1024.0f) / 1024.0f;
        uint32_t u;
        std::memcpy(&u, &q, 4);
        uint16_t h = 0;
        if (q != 0.0f) {
          const int e = int((u >> 23) & 0xff) - 127 + 15;
          h = uint16_t(((u >> 16) & 0x8000u) | (uint32_t(e) << 10) | ((u >> 13) & 0x3ffu));
        } else {
          h = uint16_t((u >> 16) & 0x8000u);
        }
        w.half[i] = h;
      }
    }
    w.view.data = w.half.data();
  }
  w.view.dtype = dt;
  w.view.rows = n;
  w.view.cols = k;
  w.view.ld = ld;
  return w;
}

// The exact value of one weight, decoded independently of the library.
double weight_value(const Weights& w, int64_t r, int64_t c) {
  const int64_t i = r * w.view.ld + c;
  switch (w.view.dtype) {
    case DType::F32: return w.f32[i];
    case DType::BF16: return bf16_to_f32(w.half[i]);
    case DType::F16: {
      const uint16_t h = w.half[i];
      const int e = (h >> 10) & 0x1f;
      const double mant = e == 0 ? (h & 0x3ff) / 1024.0 : 1.0 + (h & 0x3ff) / 1024.0;
      const double v = std::ldexp(mant, e == 0 ? -14 : e - 15);
      return (h & 0x8000) ? -v : v;
    }
    default: break;  // block types are tested in quant_matmul_test.cpp
  }
  return 0;
}

// Bound on fp32 summation error of K products, with fp32 products of rounded inputs:
// (K + 16) unit roundoffs of sum |x w|, which covers every blocked order we use.
struct Check {
  double max_rel = 0;
};

void expect_close_to_f64(const std::vector<float>& x, int64_t M, int64_t ldx, const Weights& w,
                         const std::vector<float>& bias, const std::vector<float>& y, int64_t ldy,
                         const char* what) {
  const int64_t N = w.view.rows, K = w.view.cols;
  const double u = std::ldexp(1.0, -24);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double exact = bias.empty() ? 0.0 : bias[n], mag = std::fabs(exact);
      for (int64_t k = 0; k < K; ++k) {
        double xv = x[m * ldx + k];
        if (w.view.dtype == DType::BF16) xv = bf16_to_f32(f32_to_bf16(float(xv)));
        const double p = xv * weight_value(w, n, k);
        exact += p;
        mag += std::fabs(p);
      }
      const double tol = (double(K) + 16.0) * u * mag + 1e-30;
      ASSERT_NEAR(y[m * ldy + n], exact, tol) << what << " m=" << m << " n=" << n << " K=" << K;
    }
}

class MatmulSizes : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulSizes, EveryIsaMatchesFloat64OnOddSizes) {
  const DType dt = GetParam();
  for (const test::IsaChoice& c : test::isa_bf16_choices())
    for (int64_t K : {1, 7, 33, 100, 2049})
      for (int64_t N : {1, 5, 67})
        for (int64_t M : {1, 3, 17}) {
          const Weights w = make_weights(dt, N, K, uint32_t(K * 131 + N));
          const int64_t ldx = K + 5, ldy = N + 2;
          const auto x = random_floats(M * ldx, uint32_t(M * 7 + K));
          const auto bias = (N % 2) ? random_floats(N, 99) : std::vector<float>{};
          std::vector<float> y(M * ldy, NAN);
          const test::Bf16ProductsScope products(c.fma);
          matmul_isa(c.isa, x.data(), M, ldx, w.view, bias.empty() ? nullptr : bias.data(), y.data(), ldy);
          std::string what = c.name() + "/" + dtype_name(dt);
          expect_close_to_f64(x, M, ldx, w, bias, y, ldy, what.c_str());
          if (HasFatalFailure()) return;
        }
}

TEST_P(MatmulSizes, ReferenceMatchesFloat64) {
  const DType dt = GetParam();
  const int64_t M = 3, N = 5, K = 100;
  const Weights w = make_weights(dt, N, K, 5);
  const auto x = random_floats(M * K, 6);
  const auto bias = random_floats(N, 7);
  std::vector<float> y(M * N);
  ref::matmul(x.data(), M, K, w.view, bias.data(), y.data(), N);
  expect_close_to_f64(x, M, K, w, bias, y, N, "ref");
}

// Batch invariance: row m of a many-row product equals, bit for bit, the
// one-row product of that row alone, and the result does not depend on the
// thread count. Shapes big enough for the threaded, blocked path.
TEST_P(MatmulSizes, BatchAndThreadInvariant) {
  const DType dt = GetParam();
  for (const test::IsaChoice& c : test::isa_bf16_choices())
    for (int64_t M : {17, 70}) {
      const KernelIsa isa = c.isa;
      const test::Bf16ProductsScope products(c.fma);
      const int64_t N = 301, K = 2049;
      const Weights w = make_weights(dt, N, K, 11);
      const auto x = random_floats(M * K, 12);
      const auto bias = random_floats(N, 13);
      std::vector<float> y_all(M * N), y_one(N), y_1t(M * N);
      // Three members on a two-core machine: shares of odd sizes, and members that lose their core.
      ThreadTeam team(3);
      MatmulJob j;
      j.x = x.data();
      j.ldx = K;
      j.M = M;
      j.w = w.view;
      j.bias = bias.data();
      j.y = y_all.data();
      j.ldy = N;
      team.run([&](Team& t) { matmul_jobs_isa(isa, t, &j, 1); });
      matmul_isa(isa, x.data(), M, K, w.view, bias.data(), y_1t.data(), N);
      for (int64_t m = 0; m < M; ++m) {
        matmul_isa(isa, x.data() + m * K, 1, K, w.view, bias.data(), y_one.data(), N);
        ASSERT_EQ(0, std::memcmp(y_one.data(), y_all.data() + m * N, N * 4))
            << c.name() << " row " << m << " of M=" << M << " differs from the M=1 product";
      }
      ASSERT_EQ(0, std::memcmp(y_all.data(), y_1t.data(), y_all.size() * 4))
          << c.name() << " 1 member vs a team of 3 differ";
    }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MatmulSizes, ::testing::Values(DType::F32, DType::BF16, DType::F16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Matmul, ActivationsAreRoundedToBf16ForBf16Weights) {
  // 1 + 2^-10 is not a bf16 value: it rounds to 1, so y must be exactly 1 * 1.
  const uint16_t one = f32_to_bf16(1.0f);
  WeightView w{&one, DType::BF16, 1, 1, 1};
  const float x = 1.0f + 1.0f / 1024.0f;
  for (const test::IsaChoice& c : test::isa_bf16_choices()) {
    const test::Bf16ProductsScope products(c.fma);
    float y = 0;
    matmul_isa(c.isa, &x, 1, 1, w, nullptr, &y, 1);
    EXPECT_EQ(y, 1.0f) << c.name();
  }
}

TEST(Matmul, SlicesAndRowCopies) {
  const Weights w = make_weights(DType::BF16, 9, 40, 21);
  const WeightView s = w.view.row_slice(2, 5).col_slice(3, 30);
  EXPECT_EQ(s.rows, 5);
  EXPECT_EQ(s.cols, 30);
  EXPECT_EQ(s.at(1, 4), float(weight_value(w, 3, 7)));
  std::vector<float> row(30);
  weight_row_to_f32(s, 4, row.data());
  for (int64_t c = 0; c < 30; ++c) EXPECT_EQ(row[c], float(weight_value(w, 6, c + 3)));
  EXPECT_THROW(w.view.row_slice(5, 5), Error);
  EXPECT_THROW(w.view.col_slice(-1, 2), Error);
}

// An fp8 checkpoint's matrix: element (r, c) is bf16(code value * its block's scale), and a slice keeps
// reading the scales of the blocks it came from. Values by the E4M3 definition: 0x38 = 1.0, 0x7e = 448,
// 0x01 = 2^-9 (smallest subnormal), 0xb4 = -0.75, 0x3b = 1.375.
TEST(Matmul, Fp8BlockScaledViews) {
  // 3 x 5 codes in blocks of 2 x 3: scales [[0.5, 3], [1 + 2^-10, -2]].
  const uint8_t codes[3 * 5] = {0x38, 0x7e, 0x01, 0xb4, 0x3b,  //
                                0x3b, 0x38, 0x38, 0x38, 0x7e,  //
                                0x3b, 0xb4, 0x38, 0x01, 0x38};
  const float scales[4] = {0.5f, 3.0f, 1.0f + 0x1p-10f, -2.0f};
  const Fp8BlockScales b{scales, 2, 2, 3};
  const WeightView w{codes, DType::F8_E4M3, 3, 5, 5, &b, 0, 0};
  EXPECT_EQ(w.at(0, 0), 0.5f);
  EXPECT_EQ(w.at(0, 1), 224.0f);
  EXPECT_EQ(w.at(0, 2), 0x1p-10f);
  EXPECT_EQ(w.at(0, 3), -2.25f);
  EXPECT_EQ(w.at(0, 4), 4.125f);
  EXPECT_EQ(w.at(1, 4), 1344.0f);
  // 1.375 * (1 + 2^-10) = 1.375 + 1.375 * 2^-10 needs 11 significant bits: bf16 (8) rounds it back to 1.375.
  EXPECT_EQ(w.at(2, 0), 1.375f);
  EXPECT_EQ(w.at(2, 1), -0.75f);
  EXPECT_EQ(w.at(2, 3), -0x1p-8f);
  // Row 2, columns 2..4 of a slice starting at (1, 2): the slice's (1, 1) is the tensor's (2, 3).
  const WeightView s = w.row_slice(1, 2).col_slice(2, 3);
  EXPECT_EQ(s.at(1, 1), -0x1p-8f);
  std::vector<float> row(3);
  weight_row_to_f32(s, 1, row.data());
  EXPECT_EQ(row[0], 1.0f);  // 1 * (1 + 2^-10): below half a bf16 step of 1 (2^-8), so 1
  EXPECT_EQ(row[1], -0x1p-8f);
  EXPECT_EQ(row[2], -2.0f);
  // No kernel reads fp8: a product over one is refused, not run on raw codes.
  std::vector<float> x(5), y(3);
  EXPECT_THROW(matmul(x.data(), 1, 5, w, nullptr, y.data(), 3), Error);
}

TEST(Matmul, BadShapesAreRejected) {
  const Weights w = make_weights(DType::F32, 4, 8, 1);
  std::vector<float> x(16), y(16);
  EXPECT_THROW(matmul(x.data(), 2, 4, w.view, nullptr, y.data(), 4), Error);  // ldx < K
  EXPECT_THROW(matmul(x.data(), 2, 8, w.view, nullptr, y.data(), 2), Error);  // ldy < N
}

}  // namespace
}  // namespace dpserve
