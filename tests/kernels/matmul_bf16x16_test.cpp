// bf16 and f16 weights in the BF16_X16 / F16_X16 layouts (kernels/repack.h, the forms the model
// loads bf16 and f16 matrices into): every product stays within the float64 bound of the exact
// product; on the levels that read the layout by unpacking it, it equals the product on the rows
// as stored bit for bit; the kernels that read it directly (AVX2, AVX-512 FMAs, AVX-512 BF16
// vdpbf16ps, AMX: their own summation orders) give every row the same bits whatever the batch, the
// team and the blocks; the repack round-trips. Both AVX-512 BF16 level kernels run
// (kernels::set_bf16_fma_products), whatever this CPU's default.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/bf16.h"
#include "core/check.h"
#include "core/cpu.h"
#include "kernels/isa.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "test_util.h"

namespace dpserve {
namespace {

using test::random_floats;


// A bf16 or f16 matrix (`v` the 16-bit codes).
struct Bf16Matrix {
  std::vector<uint16_t> v;
  WeightView plain;
  float value(int64_t n, int64_t k) const {
    const uint16_t c = v[size_t(n * plain.ld + k)];
    return plain.dtype == DType::F16 ? f16_to_f32(c) : bf16_to_f32(c);
  }
};

// rows x cols bf16 (or f16) values with row stride ld (>= cols), random in [-1, 1].
Bf16Matrix make_bf16(int64_t rows, int64_t cols, int64_t ld, uint32_t seed, DType t = DType::BF16) {
  Bf16Matrix m;
  const auto f = random_floats(rows * ld, seed);
  m.v.resize(f.size());
  for (size_t i = 0; i < f.size(); ++i) m.v[i] = t == DType::F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
  m.plain = WeightView{m.v.data(), t, rows, cols, ld};
  return m;
}

// float64 sum of x times W (x bf16-rounded for bf16 weights, as the kernels take it; fp32 as it is
// for f16 ones), and the (K + 16) ulp bound the kernels promise.
void expect_near_f64(const std::vector<float>& x, int64_t M, int64_t ldx, const Bf16Matrix& w, const float* y,
                     int64_t ldy) {
  const int64_t N = w.plain.rows, K = w.plain.cols;
  const bool bf16 = w.plain.dtype == DType::BF16;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double exact = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float xv = x[size_t(m * ldx + k)];
        const double p = double(bf16 ? bf16_to_f32(f32_to_bf16(xv)) : xv) * double(w.value(n, k));
        exact += p;
        mag += std::fabs(p);
      }
      ASSERT_NEAR(y[m * ldy + n], exact, (double(K) + 16) * std::ldexp(1.0, -24) * mag + 1e-30)
          << "m=" << m << " n=" << n << " K=" << K;
    }
}

TEST(MatmulBf16X16, NearTheExactProductAndPlainBitsWhereUnpacked) {
  for (const DType t : {DType::BF16, DType::F16})
  for (const test::IsaChoice& c : test::isa_bf16_choices()) {
    const KernelIsa isa = c.isa;
    if (t == DType::F16 && isa == KernelIsa::Avx512Bf16 && !c.fma) continue;  // no vdpbf16ps for f16: the same run
    const test::Bf16ProductsScope products(c.fma);
    SCOPED_TRACE(c.name() + " " + dtype_name(t));
    for (int64_t K : {32, 96, 2048})
      for (int64_t N : {1, 5, 16, 17, 47, 48, 67, 100})
        for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 33, 64, 65}) {
          const Bf16Matrix w = make_bf16(N, K, K + 64, uint32_t(K * 7 + N), t);
          const InterleavedWeight x16 = interleave(w.plain);
          ASSERT_EQ(x16.view.dtype, dtype_interleaved(t));
          const int64_t ldx = K + 3, ldy = N + 1;
          const auto x = random_floats(M * ldx, uint32_t(M * 13 + K));
          const auto bias = random_floats(N, 5);
          std::vector<float> y_plain(M * ldy, NAN), y_x16(M * ldy, NAN), y_one(ldy, NAN);
          matmul_isa(isa, x.data(), M, ldx, w.plain, bias.data(), y_plain.data(), ldy);
          matmul_isa(isa, x.data(), M, ldx, x16.view, bias.data(), y_x16.data(), ldy);
          for (int64_t m = 0; m < M; ++m) {
            // Columns past N untouched (the last group's padding rows are never stored).
            ASSERT_TRUE(std::isnan(y_x16[m * ldy + N])) << kernel_isa_name(isa) << " M=" << M << " N=" << N;
            if (!isa_reads_float_x16(isa)) {
              ASSERT_EQ(0, std::memcmp(&y_plain[m * ldy], &y_x16[m * ldy], N * 4))
                  << kernel_isa_name(isa) << " M=" << M << " N=" << N << " K=" << K << " row " << m;
            } else if (m % 7 == 0 || m == M - 1) {  // batch invariance: the row alone, same bits
              matmul_isa(isa, x.data() + m * ldx, 1, ldx, x16.view, bias.data(), y_one.data(), ldy);
              ASSERT_EQ(0, std::memcmp(y_one.data(), &y_x16[m * ldy], N * 4))
                  << "M=" << M << " N=" << N << " K=" << K << " row " << m;
            }
          }
          if (K != 2048 || isa_reads_float_x16(isa)) {  // within the float64 bound (y - bias: no bias)
            std::vector<float> nb(M * ldy);
            matmul_isa(isa, x.data(), M, ldx, x16.view, nullptr, nb.data(), ldy);
            expect_near_f64(x, M, ldx, w, nb.data(), ldy);
            if (HasFatalFailure()) return;
          }
        }
  }
}

// Many rows, a team of three and several blocks (of columns, and of rows at M = 130), K of two
// panels: row m of the product equals the one-row product (batch invariance), and the product is
// within the float64 bound.
TEST(MatmulBf16X16, BatchAndThreadInvariantWithPanels) {
  const int64_t N = 203, K = 5632;
  for (const DType t : {DType::BF16, DType::F16}) {
  const Bf16Matrix w = make_bf16(N, K, K, 31, t);
  const InterleavedWeight x16 = interleave(w.plain);
  for (bool fma : {false, true})
  for (int64_t M : {9, 16, 70, 130}) {  // 130: two row blocks of the AVX-512 FMA kernel (96 rows)
    SCOPED_TRACE(dtype_name(t));
    const test::Bf16ProductsScope products(fma);
    const auto x = random_floats(M * K, uint32_t(M));
    std::vector<float> y_all(M * N), y_one(N), y_plain(M * N);
    ThreadTeam team(3);
    MatmulJob j;
    j.x = x.data();
    j.ldx = K;
    j.M = M;
    j.w = x16.view;
    j.y = y_all.data();
    j.ldy = N;
    team.run([&](Team& t) { matmul_jobs(t, &j, 1); });
    expect_near_f64(x, M, K, w, y_all.data(), N);
    if (HasFatalFailure()) return;
    matmul(x.data(), M, K, x16.view, nullptr, y_plain.data(), N);  // one thread: same bits
    ASSERT_EQ(0, std::memcmp(y_all.data(), y_plain.data(), y_all.size() * 4)) << "M=" << M << " fma=" << fma;
    for (int64_t m = 0; m < M; ++m) {
      matmul(x.data() + m * K, 1, K, x16.view, nullptr, y_one.data(), N);
      ASSERT_EQ(0, std::memcmp(y_one.data(), &y_all[m * N], N * 4)) << "row " << m << " of M=" << M << " fma=" << fma;
    }
  }
  }
}

// The epilogues (gated pair, gathered rows, scattered scaled rows added) on X16 weights: as on the
// plain layout (bit for bit where the layout is unpacked, within rounding on the AVX-512 BF16
// kernel), and the same bits as the products alone with the epilogue applied by hand.
TEST(MatmulBf16X16, EpiloguesMatchThePlainLayout) {
  for (const DType t : {DType::BF16, DType::F16}) {
  SCOPED_TRACE(dtype_name(t));
  const int64_t H = 64, F = 32, T = 6;
  const Bf16Matrix gate = make_bf16(F, H, H, 1, t), up = make_bf16(F, H, H, 2, t), down = make_bf16(H, 2 * F, 2 * F, 3, t);
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
  if (!isa_reads_float_x16(best_kernel_isa())) {
    EXPECT_EQ(0, std::memcmp(h.data(), h_ref.data(), h.size() * 4));
    EXPECT_EQ(0, std::memcmp(out.data(), out_ref.data(), out.size() * 4));
  }
  for (size_t i = 0; i < h.size(); ++i) ASSERT_NEAR(h[i], h_ref[i], 1e-5 * (1 + std::fabs(h_ref[i]))) << i;
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], out_ref[i], 1e-4 * (1 + std::fabs(out_ref[i]))) << i;
  // By hand on the packed weights: gathered x rows, gate and up products, silu(g) * u, then the
  // down product of h scaled and added into the scattered rows.
  std::vector<float> xg(3 * H), g(3 * F), u(3 * F), dn(3 * H);
  for (int i = 0; i < 3; ++i) std::memcpy(&xg[i * H], &x[rows[i] * H], H * 4);
  matmul(xg.data(), 3, H, g8.view, nullptr, g.data(), F);
  matmul(xg.data(), 3, H, u8.view, nullptr, u.data(), F);
  for (int i = 0; i < 3 * F; ++i) {
    const float want = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    ASSERT_NEAR(h[i], want, 1e-5 * (1 + std::fabs(want))) << i;
  }
  matmul(h.data(), 3, F, d8, nullptr, dn.data(), H);
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < H; ++c) {
      const float want = 1.0f + scale[i] * dn[i * H + c];
      ASSERT_NEAR(out[rows[i] * H + c], want, 1e-6 * (1 + std::fabs(want))) << i << "," << c;
    }
  }
}

// AMX tiles (matmul_amx_bf16.cpp): products of several row tiles and row blocks (M past 16, 32 and
// the 128-row block), row bands (past 128 rows; two bands past 256), K in panels of 2048 (two
// whole ones at 4096, a one-chunk last panel at 2080), odd group counts and partial groups, a
// column slice of a wider matrix: within the float64 bound, every row the bits of that row alone,
// and the AVX-512 BF16 kernel's result within rounding. On a CPU without AMX this is the one test
// that says it did not run.
TEST(MatmulBf16X16, AmxTilesWithinTheBoundAndBatchInvariant) {
  if (!kernel_isa_supported(KernelIsa::Amx))
    GTEST_SKIP() << "AMX cases did not run: " << amx_unavailable_reason();
  for (int64_t K : {32, 160, 2080, 4096})
    for (int64_t N : {16, 33, 80, 130})
      for (int64_t M : {1, 15, 16, 17, 31, 32, 33, 47, 129, 200, 300}) {
        const Bf16Matrix w = make_bf16(N, K + 64, K + 64, uint32_t(K + N * 3));
        const InterleavedWeight full = interleave(w.plain);
        const WeightView x16 = full.view.col_slice(32, K);  // group stride wider than the row
        Bf16Matrix ws = w;  // the same slice on the plain matrix, for the bound
        ws.v.assign(size_t(N * K), 0);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t k = 0; k < K; ++k) ws.v[size_t(n * K + k)] = w.v[size_t(n * (K + 64) + 32 + k)];
        ws.plain = WeightView{ws.v.data(), DType::BF16, N, K, K};
        const int64_t ldx = K + 5, ldy = N + 3;
        const auto x = random_floats(M * ldx, uint32_t(M * 17 + K));
        std::vector<float> y(M * ldy, NAN), y_one(ldy, NAN), y_avx(M * ldy, NAN);
        matmul_isa(KernelIsa::Amx, x.data(), M, ldx, x16, nullptr, y.data(), ldy);
        matmul_isa(KernelIsa::Avx512Bf16, x.data(), M, ldx, x16, nullptr, y_avx.data(), ldy);
        expect_near_f64(x, M, ldx, ws, y.data(), ldy);
        if (HasFatalFailure()) return;
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = N; n < ldy; ++n) ASSERT_TRUE(std::isnan(y[m * ldy + n])) << "M=" << M << " N=" << N;
          for (int64_t n = 0; n < N; ++n)
            ASSERT_NEAR(y[m * ldy + n], y_avx[m * ldy + n], 1e-4 * (1 + std::fabs(y_avx[m * ldy + n])));
          if (m % 5 == 0 || m == M - 1) {
            matmul_isa(KernelIsa::Amx, x.data() + m * ldx, 1, ldx, x16, nullptr, y_one.data(), ldy);
            ASSERT_EQ(0, std::memcmp(y_one.data(), &y[m * ldy], N * 4)) << "M=" << M << " N=" << N << " K=" << K
                                                                         << " row " << m;
          }
        }
      }
}

// An MoE layer's experts as one call (many jobs, gathered rows of different counts, gated pairs
// and plain products, a team of three): the column blocks of a call of many jobs are cut over all
// of them (on AMX tiles a job's whole width a task, kernels/matmul.cpp), so every job must give
// the bits it gives alone on one thread, and stay within the float64 bound.
TEST(MatmulBf16X16, ManyJobsGiveEachJobsBitsAlone) {
  const int64_t K = 160, N = 96, T = 150;
  const auto x = random_floats(T * K, 41);
  const int64_t counts[] = {1, 5, 33, 64, 0, 130, 17};
  constexpr int kJobs = 7;
  std::vector<Bf16Matrix> w;
  std::vector<InterleavedWeight> w16;
  for (int e = 0; e < 2 * kJobs; ++e) {
    w.push_back(make_bf16(N, K, K, uint32_t(50 + e)));
    w16.push_back(interleave(w.back().plain));
  }
  std::vector<std::vector<int32_t>> rows(kJobs);
  for (int e = 0; e < kJobs; ++e)
    for (int64_t i = 0; i < counts[e]; ++i) rows[size_t(e)].push_back(int32_t((i * 7 + e * 11) % T));
  for (const test::IsaChoice& c : test::isa_bf16_choices()) {
    const test::Bf16ProductsScope products(c.fma);
    SCOPED_TRACE(c.name());
    std::vector<std::vector<float>> y(kJobs);
    auto job = [&](int e, float* out) {
      MatmulJob j;
      j.x = x.data();
      j.ldx = K;
      j.M = counts[e];
      j.rows = rows[size_t(e)].data();
      j.w = w16[size_t(2 * e)].view;
      if (e % 2 == 0) j.w_up = w16[size_t(2 * e + 1)].view;  // every other job a gated pair
      j.y = out;
      j.ldy = N;
      return j;
    };
    std::vector<MatmulJob> jobs;
    for (int e = 0; e < kJobs; ++e) {
      y[size_t(e)].assign(size_t(counts[e] * N), NAN);
      jobs.push_back(job(e, y[size_t(e)].data()));
    }
    ThreadTeam team(3);
    team.run([&](Team& t) { matmul_jobs_isa(c.isa, t, jobs.data(), kJobs); });
    for (int e = 0; e < kJobs; ++e) {
      if (counts[e] == 0) continue;  // a job no row chose: nothing to compare
      std::vector<float> alone(size_t(counts[e] * N), NAN);
      const MatmulJob j = job(e, alone.data());
      matmul_jobs_isa(c.isa, Team::solo(), &j, 1);
      ASSERT_EQ(0, std::memcmp(alone.data(), y[size_t(e)].data(), alone.size() * 4)) << "job " << e;
      std::vector<float> xe(size_t(counts[e] * K));
      for (int64_t i = 0; i < counts[e]; ++i) std::memcpy(&xe[size_t(i * K)], &x[size_t(rows[size_t(e)][size_t(i)] * K)], K * 4);
      if (e % 2 == 1) {
        expect_near_f64(xe, counts[e], K, w[size_t(2 * e)], y[size_t(e)].data(), N);
        if (HasFatalFailure()) return;
        continue;
      }
      // A gated pair: silu(x . gate) * (x . up) from the two products' float64 sums.
      for (int64_t i = 0; i < counts[e]; ++i)
        for (int64_t n = 0; n < N; ++n) {
          double gs = 0, us = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double xv = bf16_to_f32(f32_to_bf16(xe[size_t(i * K + k)]));
            gs += xv * w[size_t(2 * e)].value(n, k);
            us += xv * w[size_t(2 * e + 1)].value(n, k);
          }
          const double want = gs / (1.0 + std::exp(-gs)) * us;
          ASSERT_NEAR(y[size_t(e)][size_t(i * N + n)], want, 1e-5 * (1 + std::fabs(want))) << "job " << e << " row " << i;
        }
    }
  }
}

TEST(MatmulBf16X16, RepackRoundTripsAndSlices) {
  for (const DType t : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(t));
    const Bf16Matrix w = make_bf16(21, 96, 100, 9, t);
    const InterleavedWeight x16 = interleave(w.plain);
    std::vector<float> row(96);
    for (int64_t r = 0; r < 21; ++r) {
      weight_row_to_f32(x16.view, r, row.data());
      for (int64_t c = 0; c < 96; ++c) ASSERT_EQ(row[c], w.value(r, c)) << r << "," << c;
    }
    EXPECT_EQ(x16.view.at(17, 95), w.value(17, 95));
    // Slices start on a group (16 rows) and a chunk (32 columns).
    const WeightView s = x16.view.row_slice(16, 5).col_slice(32, 64);
    EXPECT_EQ(s.at(2, 3), w.value(18, 35));
    EXPECT_THROW(x16.view.row_slice(8, 8), Error);
    EXPECT_THROW(x16.view.col_slice(16, 32), Error);
    // Rows of a length that is not whole chunks have no X16 form.
    const Bf16Matrix odd = make_bf16(4, 40, 40, 1, t);
    EXPECT_THROW(interleave(odd.plain), Error);
  }
  // The F16_X16 layout itself (kernels/repack.h): element k of row r of a group at byte 32 k + 2 r.
  const Bf16Matrix h = make_bf16(16, 64, 64, 3, DType::F16);
  const InterleavedWeight hx = interleave(h.plain);
  const auto* bytes = hx.bytes.data();
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 64; ++k) {
      uint16_t c;
      std::memcpy(&c, bytes + 32 * k + 2 * r, 2);
      ASSERT_EQ(c, h.v[size_t(r * 64 + k)]) << r << "," << k;
    }
}

}  // namespace
}  // namespace dpserve
