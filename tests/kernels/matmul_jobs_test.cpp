// matmul_jobs' epilogues against float64 definitions, on every ISA level: the gated pair
// (SwiGLU), gathered activation rows, scattered and scaled output rows added in job order (a
// mixture of experts' weighted sum); and the bits: the same whatever the team, the other jobs
// and the other rows of the batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "test_util.h"

namespace dpserve {
namespace {

using test::random_floats;

struct Mat {
  std::vector<uint16_t> h;
  std::vector<float> f;
  WeightView v;
};

Mat make(DType dt, int64_t n, int64_t k, uint32_t seed) {
  Mat m;
  m.f = random_floats(n * k, seed, -0.5f, 0.5f);
  if (dt == DType::BF16) {
    for (float& x : m.f) {
      m.h.push_back(f32_to_bf16(x));
      x = bf16_to_f32(m.h.back());
    }
    m.v = WeightView{m.h.data(), dt, n, k, k};
  } else {
    m.v = WeightView{m.f.data(), dt, n, k, k};
  }
  return m;
}

// x . w[n] in float64, with x rounded as the kernels round it for this dtype.
double dot(const float* x, const Mat& w, int64_t n, int64_t k) {
  double s = 0;
  for (int64_t i = 0; i < k; ++i) {
    const double xv = w.v.dtype == DType::BF16 ? bf16_to_f32(f32_to_bf16(x[i])) : x[i];
    s += xv * w.f[size_t(n * k + i)];
  }
  return s;
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// PyTorch's gelu(approximate="tanh") as its documentation writes it.
double gelu_tanh(double v) {
  return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
}

// The gated pair: SwiGLU, and GeGLU (Gemma), on every ISA and format.
TEST(MatmulJobs, GatedPairIsActOfGateTimesUp) {
  for (const GateAct act : {GateAct::Silu, GateAct::GeluTanh})
    for (KernelIsa isa : test::supported_isas())
      for (DType dt : {DType::BF16, DType::F32}) {
        const int64_t M = 5, K = 77, N = 130;
        const Mat g = make(dt, N, K, 1), u = make(dt, N, K, 2);
        const auto x = random_floats(M * K, 3);
        std::vector<float> y(M * N, NAN);
        MatmulJob j;
        j.x = x.data();
        j.ldx = K;
        j.M = M;
        j.w = g.v;
        j.w_up = u.v;
        j.gate_act = act;
        j.y = y.data();
        j.ldy = N;
        ThreadTeam team(2);
        team.run([&](Team& t) { matmul_jobs_isa(isa, t, &j, 1); });
        const bool silu_gate = act == GateAct::Silu;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            const double gv = dot(&x[m * K], g, n, K);
            const double want = (silu_gate ? silu(gv) : gelu_tanh(gv)) * dot(&x[m * K], u, n, K);
            ASSERT_NEAR(y[m * N + n], want, 1e-5 * (1 + std::fabs(want)))
                << kernel_isa_name(isa) << " m=" << m << " n=" << n << " gelu " << !silu_gate;
          }
        // Bit for bit what the unfused path (LoRA rows) computes: two products, then the activation.
        if (isa == best_kernel_isa()) {
          std::vector<float> gy(M * N), uy(M * N);
          matmul(x.data(), M, K, g.v, nullptr, gy.data(), N);
          matmul(x.data(), M, K, u.v, nullptr, uy.data(), N);
          if (silu_gate) {
            silu_mul(gy.data(), uy.data(), gy.data(), M * N);
          } else {
            gelu_tanh_mul(gy.data(), uy.data(), gy.data(), M * N);
          }
          EXPECT_EQ(0, std::memcmp(gy.data(), y.data(), y.size() * 4));
        }
      }
}

// A mixture of experts' shape: tokens gathered per expert, each expert's output scaled by the
// token's routing weight and added into the token's row, experts in ascending order.
struct Moe {
  int64_t T = 9, H = 70, F = 40, E = 4;
  std::vector<float> x;
  std::vector<Mat> down;
  std::vector<std::vector<int32_t>> toks;  // per expert, ascending
  std::vector<std::vector<float>> wts;
  Moe(DType dt) {
    x = random_floats(T * F, 11);
    for (int64_t e = 0; e < E; ++e) down.push_back(make(dt, H, F, uint32_t(20 + e)));
    toks.resize(size_t(E));
    wts.resize(size_t(E));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t e = 0; e < E; ++e)
        if ((t * 7 + e * 3) % 4 < 2) {  // two experts per token, varying
          toks[size_t(e)].push_back(int32_t(t));
          wts[size_t(e)].push_back(0.25f + 0.1f * float(e) + 0.01f * float(t));
        }
  }
  // out[t] += sum over t's experts (ascending) of w * (x[t] . down_e^T), using only the rows in `only`.
  void run(KernelIsa isa, Team& t, std::vector<float>& out, const std::vector<int32_t>& only) {
    std::vector<MatmulJob> jobs;
    std::vector<std::vector<int32_t>> rows(static_cast<size_t>(E));
    std::vector<std::vector<float>> sc(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      for (size_t i = 0; i < toks[size_t(e)].size(); ++i)
        for (int32_t o : only)
          if (o == toks[size_t(e)][i]) rows[size_t(e)].push_back(o), sc[size_t(e)].push_back(wts[size_t(e)][i]);
      if (rows[size_t(e)].empty()) continue;
      MatmulJob j;
      j.x = x.data();
      j.ldx = F;
      j.M = int64_t(rows[size_t(e)].size());
      j.rows = rows[size_t(e)].data();
      j.w = down[size_t(e)].v;
      j.y = out.data();
      j.ldy = H;
      j.out_rows = rows[size_t(e)].data();
      j.scale = sc[size_t(e)].data();
      j.store = MatmulStore::Add;
      jobs.push_back(j);
    }
    matmul_jobs_isa(isa, t, jobs.data(), int64_t(jobs.size()), MatmulOrder::ColumnsInJobOrder);
  }
};

TEST(MatmulJobs, GatheredRowsScaledAndAddedInExpertOrder) {
  for (KernelIsa isa : test::supported_isas())
    for (DType dt : {DType::BF16, DType::F32}) {
      Moe moe(dt);
      std::vector<int32_t> all;
      for (int32_t t = 0; t < moe.T; ++t) all.push_back(t);
      const auto base = random_floats(moe.T * moe.H, 5);
      std::vector<float> out = base;
      ThreadTeam team(3);
      team.run([&](Team& t) { moe.run(isa, t, out, all); });
      for (int64_t t = 0; t < moe.T; ++t)
        for (int64_t h = 0; h < moe.H; ++h) {
          double want = base[size_t(t * moe.H + h)];
          for (int64_t e = 0; e < moe.E; ++e)
            for (size_t i = 0; i < moe.toks[size_t(e)].size(); ++i)
              if (moe.toks[size_t(e)][i] == t) want += moe.wts[size_t(e)][i] * dot(&moe.x[t * moe.F], moe.down[size_t(e)], h, moe.F);
          ASSERT_NEAR(out[size_t(t * moe.H + h)], want, 1e-5) << kernel_isa_name(isa) << " t=" << t << " h=" << h;
        }
      // Batch invariance: each token alone gives the same bits; so does a team of one.
      std::vector<float> solo = base;
      moe.run(isa, Team::solo(), solo, all);
      EXPECT_EQ(0, std::memcmp(solo.data(), out.data(), out.size() * 4)) << kernel_isa_name(isa);
      for (int32_t t = 0; t < moe.T; ++t) {
        std::vector<float> one = base;
        team.run([&](Team& tm) { moe.run(isa, tm, one, {t}); });
        EXPECT_EQ(0, std::memcmp(&one[size_t(t * moe.H)], &out[size_t(t * moe.H)], size_t(moe.H) * 4))
            << kernel_isa_name(isa) << " token " << t << " alone differs from the batch";
      }
    }
}

TEST(MatmulJobs, BadJobsAreRejectedByEveryMember) {
  const Mat a = make(DType::F32, 4, 8, 1), b = make(DType::BF16, 4, 8, 2);
  std::vector<float> x(8), y(4);
  MatmulJob j;
  j.x = x.data();
  j.ldx = 8;
  j.M = 1;
  j.w = a.v;
  j.w_up = b.v;  // dtype differs from w
  j.y = y.data();
  j.ldy = 4;
  ThreadTeam team(2);
  EXPECT_THROW(team.run([&](Team& t) { matmul_jobs(t, &j, 1); }), Error);
}

}  // namespace
}  // namespace dpserve
