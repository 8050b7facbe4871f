// bf16 weights in the BF16_X8 layout (kernels/repack.h, the form the model loads bf16 matrices
// into): every product equals, bit for bit, the same product on the rows as stored, on every ISA
// level, and stays within the float64 bound of the exact product; the repack round-trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "test_util.h"

namespace dpserve {
namespace {

using test::random_floats;

struct Bf16Matrix {
  std::vector<uint16_t> v;
  WeightView plain;
};

// rows x cols bf16 values with row stride ld (>= cols), random in [-1, 1].
Bf16Matrix make_bf16(int64_t rows, int64_t cols, int64_t ld, uint32_t seed) {
  Bf16Matrix m;
  const auto f = random_floats(rows * ld, seed);
  m.v.resize(f.size());
  for (size_t i = 0; i < f.size(); ++i) m.v[i] = f32_to_bf16(f[i]);
  m.plain = WeightView{m.v.data(), DType::BF16, rows, cols, ld};
  return m;
}

// float64 sum of bf16-rounded x times W, and the (K + 16) ulp bound the kernels promise.
void expect_near_f64(const std::vector<float>& x, int64_t M, int64_t ldx, const Bf16Matrix& w, const float* y,
                     int64_t ldy) {
  const int64_t N = w.plain.rows, K = w.plain.cols;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double exact = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = double(bf16_to_f32(f32_to_bf16(x[size_t(m * ldx + k)]))) *
                         double(bf16_to_f32(w.v[size_t(n * w.plain.ld + k)]));
        exact += p;
        mag += std::fabs(p);
      }
      ASSERT_NEAR(y[m * ldy + n], exact, (double(K) + 16) * std::ldexp(1.0, -24) * mag + 1e-30)
          << "m=" << m << " n=" << n << " K=" << K;
    }
}

TEST(MatmulBf16X8, EqualsThePlainLayoutBitForBitOnEveryLevel) {
  for (KernelIsa isa : test::supported_isas())
    for (int64_t K : {32, 96, 2048})
      for (int64_t N : {1, 5, 8, 17, 67})
        for (int64_t M : {1, 2, 3, 4, 5, 7, 17, 33}) {
          const Bf16Matrix w = make_bf16(N, K, K + 64, uint32_t(K * 7 + N));
          const InterleavedWeight x8 = interleave(w.plain);
          ASSERT_EQ(x8.view.dtype, DType::BF16_X8);
          const int64_t ldx = K + 3, ldy = N + 1;
          const auto x = random_floats(M * ldx, uint32_t(M * 13 + K));
          const auto bias = random_floats(N, 5);
          std::vector<float> y_plain(M * ldy, NAN), y_x8(M * ldy, NAN);
          matmul_isa(isa, x.data(), M, ldx, w.plain, bias.data(), y_plain.data(), ldy);
          matmul_isa(isa, x.data(), M, ldx, x8.view, bias.data(), y_x8.data(), ldy);
          for (int64_t m = 0; m < M; ++m)
            ASSERT_EQ(0, std::memcmp(&y_plain[m * ldy], &y_x8[m * ldy], N * 4))
                << kernel_isa_name(isa) << " M=" << M << " N=" << N << " K=" << K << " row " << m;
          if (K == 96) {  // and both within the float64 bound (without the bias: compare y - bias)
            std::vector<float> nb(M * ldy);
            matmul_isa(isa, x.data(), M, ldx, x8.view, nullptr, nb.data(), ldy);
            expect_near_f64(x, M, ldx, w, nb.data(), ldy);
            if (HasFatalFailure()) return;
          }
        }
}

// Many rows, a team of three and several blocks: row m of the product equals the one-row product
// (batch invariance), and the GEMV and GEMM paths (panels over K) agree.
TEST(MatmulBf16X8, BatchAndThreadInvariantWithPanels) {
  const int64_t N = 203, K = 5632;
  const Bf16Matrix w = make_bf16(N, K, K, 31);
  const InterleavedWeight x8 = interleave(w.plain);
  for (int64_t M : {9, 70}) {
    const auto x = random_floats(M * K, uint32_t(M));
    std::vector<float> y_all(M * N), y_one(N), y_plain(M * N);
    ThreadTeam team(3);
    MatmulJob j;
    j.x = x.data();
    j.ldx = K;
    j.M = M;
    j.w = x8.view;
    j.y = y_all.data();
    j.ldy = N;
    team.run([&](Team& t) { matmul_jobs(t, &j, 1); });
    matmul(x.data(), M, K, w.plain, nullptr, y_plain.data(), N);
    ASSERT_EQ(0, std::memcmp(y_all.data(), y_plain.data(), y_all.size() * 4)) << "M=" << M;
    for (int64_t m = 0; m < M; ++m) {
      matmul(x.data() + m * K, 1, K, x8.view, nullptr, y_one.data(), N);
      ASSERT_EQ(0, std::memcmp(y_one.data(), &y_all[m * N], N * 4)) << "row " << m << " of M=" << M;
    }
  }
}

// The epilogues (gated pair, gathered rows, scattered scaled rows added) read X8 weights as plain.
TEST(MatmulBf16X8, EpiloguesMatchThePlainLayout) {
  const int64_t H = 64, F = 32, T = 6;
  const Bf16Matrix gate = make_bf16(F, H, H, 1), up = make_bf16(F, H, H, 2), down = make_bf16(H, 2 * F, 2 * F, 3);
  const InterleavedWeight g8 = interleave(gate.plain), u8 = interleave(up.plain);
  // down's second F columns, cut on a chunk boundary after repacking: a column slice of an X8 matrix.
  const InterleavedWeight d8full = interleave(down.plain);
  const WeightView d_plain = down.plain.col_slice(32, 32), d8 = d8full.view.col_slice(32, 32);
  const auto x = random_floats(T * H, 4);
  const int32_t rows[3] = {4, 0, 2};
  const float scale[3] = {0.5f, -2.0f, 0.25f};
  auto run = [&](bool packed, std::vector<float>& h, std::vector<float>& out) {
    h.assign(3 * F, 0.0f);
    out.assign(T * H, 1.0f);
    MatmulJob gu;
    gu.x = x.data();
    gu.ldx = H;
    gu.M = 3;
    gu.rows = rows;
    gu.w = packed ? g8.view : gate.plain;
    gu.w_up = packed ? u8.view : up.plain;
    gu.y = h.data();
    gu.ldy = F;
    matmul_jobs(Team::solo(), &gu, 1);
    MatmulJob dn;
    dn.x = h.data();
    dn.ldx = F;
    dn.M = 3;
    dn.w = packed ? d8 : d_plain;
    dn.y = out.data();
    dn.ldy = H;
    dn.out_rows = rows;
    dn.scale = scale;
    dn.store = MatmulStore::Add;
    matmul_jobs(Team::solo(), &dn, 1);
  };
  std::vector<float> h_ref, out_ref, h, out;
  run(false, h_ref, out_ref);
  run(true, h, out);
  EXPECT_EQ(0, std::memcmp(h.data(), h_ref.data(), h.size() * 4));
  EXPECT_EQ(0, std::memcmp(out.data(), out_ref.data(), out.size() * 4));
}

TEST(MatmulBf16X8, RepackRoundTripsAndSlices) {
  const Bf16Matrix w = make_bf16(21, 96, 100, 9);
  const InterleavedWeight x8 = interleave(w.plain);
  std::vector<float> row(96);
  for (int64_t r = 0; r < 21; ++r) {
    weight_row_to_f32(x8.view, r, row.data());
    for (int64_t c = 0; c < 96; ++c) ASSERT_EQ(row[c], bf16_to_f32(w.v[size_t(r * 100 + c)])) << r << "," << c;
  }
  EXPECT_EQ(x8.view.at(17, 95), bf16_to_f32(w.v[17 * 100 + 95]));
  // Slices start on a group (8 rows) and a chunk (32 columns).
  const WeightView s = x8.view.row_slice(8, 13).col_slice(32, 64);
  EXPECT_EQ(s.at(2, 3), bf16_to_f32(w.v[10 * 100 + 35]));
  EXPECT_THROW(x8.view.row_slice(4, 8), Error);
  EXPECT_THROW(x8.view.col_slice(16, 32), Error);
  // Rows of a length that is not whole chunks have no X8 form.
  const Bf16Matrix odd = make_bf16(4, 40, 40, 1);
  EXPECT_THROW(interleave(odd.plain), Error);
}

}  // namespace
}  // namespace dpserve
