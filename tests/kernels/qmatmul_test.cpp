// matmul with block-quantized weights, every type x layout (GGML's plain blocks, repacked *_X16)
// x ISA path, on odd sizes:
//  * bit for bit against ref::qmatmul, the scalar definition of kernels/qmatmul.h (the SIMD
//    paths must reproduce its integer dots and fp32 steps exactly, whatever the tile shape);
//  * within a stated bound of the float64 product of the *dequantized* weights (decoded by
//    dequantize_row, which matches gguf-py) with the *unquantized* activations, so the reference
//    itself is checked against something we did not write the same way;
//  * batch and thread invariance, matmul_multi, repacking round trips and slices.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/bf16.h"
#include "core/check.h"
#include "core/cpu.h"
#include "kernels/dequant.h"
#include "kernels/matmul.h"
#include "kernels/qmatmul.h"
#include "kernels/quant_act.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"
#include "kernels/team.h"
#include "quant_weights.h"
#include "test_util.h"

namespace dpserve {
namespace {

using test::make_weights;
using test::QWeights;
using test::random_floats;

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::string label(DType t, bool repacked, KernelIsa isa, int64_t M, int64_t N, int64_t K) {
  return std::string(dtype_name(t)) + (repacked ? "x16" : "") + "/" + kernel_isa_name(isa) + " M=" +
         std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
}

// Float64 product of dequantized weights and unquantized x, with a bound on what quantizing the
// activations may change: each x_k becomes q_k * da with |q_k da - x_k| <= da (1/2 + 2^-20) (one
// rounding to an integer code, plus the fp32 rounding of da and of 127 / amax; for 32-element
// blocks da is f16 and that adds up to 127 da 2^-11), so
// |y - exact| <= sum_k |w_k| da_b(k) (1/2 + 2^-20), plus fp32 accumulation: one rounding per
// block product and per add, at most (K / block + 8) * 2^-23 of sum_k |w_k x_k|.
void expect_near_f64(const QWeights& w, const std::vector<float>& x, int64_t M, int64_t ldx, const float* bias,
                     const std::vector<float>& y, int64_t ldy, const std::string& what) {
  const int64_t N = w.pv.rows, K = w.pv.cols, B = act_block_elems(w.pv.dtype);
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    weight_row_to_f32(w.pv, n, row.data());
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.data() + m * ldx;
      double exact = bias ? bias[n] : 0.0, quant_err = 0, mag = bias ? std::fabs(bias[n]) : 0.0;
      for (int64_t b = 0; b < K / B; ++b) {
        double amax = 0, wsum = 0;
        for (int64_t k = b * B; k < (b + 1) * B; ++k) {
          amax = std::max(amax, double(std::fabs(xr[k])));
          wsum += std::fabs(row[k]);
          exact += double(row[k]) * xr[k];
          mag += std::fabs(double(row[k]) * xr[k]);
        }
        // 32-element blocks: d rounded to f16 moves each q_k d by up to 127 d 2^-11 more.
        quant_err += wsum * (amax / 127.0) * (0.5 + (B == 32 ? 127 * std::ldexp(1.0, -11) : 0.0) + std::ldexp(1.0, -20));
      }
      const double tol = quant_err + (double(K / B) + 8) * std::ldexp(1.0, -23) * (mag + quant_err) + 1e-30;
      ASSERT_NEAR(y[m * ldy + n], exact, tol) << what << " m=" << m << " n=" << n;
    }
  }
}

class QMatmul : public ::testing::TestWithParam<DType> {};

TEST_P(QMatmul, EveryPathMatchesTheReferenceBitForBitOnOddSizes) {
  const DType t = GetParam();
  const int64_t be = dtype_block_elems(t);
  const std::vector<std::pair<int64_t, int64_t>> shapes =
      be == 32 ? std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {37, 160}, {67, 2144}}
               : std::vector<std::pair<int64_t, int64_t>>{{1, 256}, {37, 768}, {67, 1792}};
  int checked = 0;
  for (auto [N, K] : shapes)
    for (bool raw : {false, true}) {
      const QWeights w = make_weights(t, N, K, uint32_t(N * 7 + K + raw), raw);
      for (int64_t M : {1, 2, 3, 7, 17, 33}) {
        const int64_t ldx = K + 3, ldy = N + 5;
        const auto x = random_floats(M * ldx, uint32_t(M * 31 + K), -2.0f, 2.0f);
        const auto bias = random_floats(N, uint32_t(N));
        const float* b = (M % 2) ? bias.data() : nullptr;
        std::vector<float> want(size_t(M * ldy), -7.0f);
        ref::qmatmul(x.data(), M, ldx, w.pv, b, want.data(), ldy);
        if (!raw && M <= 7) {
          expect_near_f64(w, x, M, ldx, b, want, ldy, label(t, false, KernelIsa::Portable, M, N, K) + " (reference)");
          if (HasFatalFailure()) return;
        }
        for (KernelIsa isa : test::supported_isas())
          for (bool repacked : {false, true}) {
            std::vector<float> y(size_t(M * ldy), -7.0f);  // gaps between rows must stay untouched
            matmul_isa(isa, x.data(), M, ldx, repacked ? w.x16.view : w.pv, b, y.data(), ldy);
            ASSERT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * 4))
                << label(t, repacked, isa, M, N, K) << (raw ? " (random bytes)" : "");
            ++checked;
          }
      }
    }
  EXPECT_GT(checked, 0);
}

// Row m of an M-row product equals the 1-row product of x[m] (GEMV vs GEMM tiles), on one and
// a team of three, for shapes that take the blocked, threaded path.
TEST_P(QMatmul, BatchAndThreadInvariant) {
  const DType t = GetParam();
  const int64_t N = 301, K = 2048;
  const QWeights w = make_weights(t, N, K, 11, false);
  for (KernelIsa isa : test::supported_isas())
    for (int64_t M : {5, 40}) {
      const auto x = random_floats(M * K, 12);
      const auto bias = random_floats(N, 13);
      std::vector<float> y_all(size_t(M * N)), y_one(static_cast<size_t>(N)), y_1t(size_t(M * N));
      // Three members on a two-core machine: shares of odd sizes, members that lose their core.
      ThreadTeam team(3);
      MatmulJob j;
      j.x = x.data();
      j.ldx = K;
      j.M = M;
      j.w = w.x16.view;
      j.bias = bias.data();
      j.y = y_all.data();
      j.ldy = N;
      team.run([&](Team& tm) { matmul_jobs_isa(isa, tm, &j, 1); });
      matmul_isa(isa, x.data(), M, K, w.x16.view, bias.data(), y_1t.data(), N);
      for (int64_t m = 0; m < M; ++m) {
        matmul_isa(isa, x.data() + m * K, 1, K, w.x16.view, bias.data(), y_one.data(), N);
        ASSERT_EQ(0, std::memcmp(y_one.data(), y_all.data() + m * N, size_t(N) * 4))
            << label(t, true, isa, M, N, K) << ": row " << m << " differs from the M=1 product";
      }
      ASSERT_EQ(0, std::memcmp(y_all.data(), y_1t.data(), y_all.size() * 4))
          << label(t, true, isa, M, N, K) << ": 1 thread vs 2 threads differ";
    }
}

// The AMX int8 tiles (kernels/qmatmul_amx.cpp, Q8_0 / Q4_0 / Q4_K; the other types run the VNNI
// blocks there): row tiles of 8-16 rows, a last one of fewer rows (VNNI's), several row tiles, a
// row block past 128 rows (one row band) and two row bands (M = 300), a block count that is not a
// multiple of the batch of four, more groups than one panel, a partial last group and a row / column
// slice. Bit for bit the reference, as every path.
TEST_P(QMatmul, AmxTilesMatchTheReferenceBitForBit) {
  if (!kernel_isa_supported(KernelIsa::Amx) || !cpu_features().amx_int8)
    GTEST_SKIP() << "AMX cases did not run: "
                 << (kernel_isa_supported(KernelIsa::Amx) ? "this CPU has no AMX-INT8" : amx_unavailable_reason());
  const DType t = GetParam();
  const int64_t be = dtype_block_elems(t), K = be == 32 ? 11 * 32 : 3 * 256, N = 300;
  int checked = 0;
  for (bool raw : {false, true}) {
    const QWeights w = make_weights(t, N, K, uint32_t(41 + raw), raw);
    const WeightView views[] = {w.pv, w.x16.view, w.x16.view.row_slice(32, 221).col_slice(be, K - 2 * be)};
    for (const WeightView& v : views)
      for (int64_t M : {24, 25, 31, 36, 40, 47, 130, 300}) {
        const int64_t ldx = v.cols + 5, ldy = v.rows + 3;
        const auto x = random_floats(M * ldx, uint32_t(M + 7 * raw), -3.0f, 3.0f);
        std::vector<float> want(size_t(M * ldy), -7.0f), y(size_t(M * ldy), -7.0f);
        ref::qmatmul(x.data(), M, ldx, v, nullptr, want.data(), ldy);
        matmul_isa(KernelIsa::Amx, x.data(), M, ldx, v, nullptr, y.data(), ldy);
        ASSERT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * 4))
            << label(t, v.dtype != t, KernelIsa::Amx, M, v.rows, v.cols) << (raw ? " (random bytes)" : "");
        ++checked;
      }
  }
  EXPECT_EQ(checked, 48);
}

// matmul_multi, including a mix of weight types (llama.cpp's Q4_K_M puts a Q6_K v_proj beside Q4_K
// q/k), equals separate products bit for bit.
TEST_P(QMatmul, MultiEqualsSeparateProducts) {
  const DType t = GetParam(), other = t == DType::Q6_K ? DType::Q8_0 : DType::Q6_K;
  const int64_t K = 512, M = 6;
  const QWeights a = make_weights(t, 48, K, 1, false), b = make_weights(other, 21, K, 2, false),
                 c = make_weights(t, 16, K, 3, false);
  const auto x = random_floats(M * K, 3);
  std::vector<float> ya(M * 48), yb(M * 21), yc(M * 16), sa(M * 48), sb(M * 21), sc(M * 16);
  const MatmulOut outs[3] = {{a.x16.view, nullptr, ya.data(), 48},
                             {b.x16.view, nullptr, yb.data(), 21},
                             {c.pv, nullptr, yc.data(), 16}};
  matmul_multi(x.data(), M, K, outs, 3);
  matmul(x.data(), M, K, a.x16.view, nullptr, sa.data(), 48);
  matmul(x.data(), M, K, b.x16.view, nullptr, sb.data(), 21);
  matmul(x.data(), M, K, c.pv, nullptr, sc.data(), 16);
  EXPECT_EQ(0, std::memcmp(ya.data(), sa.data(), ya.size() * 4));
  EXPECT_EQ(0, std::memcmp(yb.data(), sb.data(), yb.size() * 4));
  EXPECT_EQ(0, std::memcmp(yc.data(), sc.data(), yc.size() * 4));
}

// Repacking loses nothing: every row comes back byte for byte, and the decoded rows agree.
TEST_P(QMatmul, RepackRoundTripsAndSlices) {
  const DType t = GetParam();
  const int64_t N = 37, K = 4 * dtype_block_elems(t);
  const QWeights w = make_weights(t, N, K, 5, true);
  const int64_t rb = dtype_row_bytes(t, K);
  std::vector<uint8_t> back(static_cast<size_t>(rb));
  std::vector<float> a(static_cast<size_t>(K)), b(static_cast<size_t>(K));
  for (int64_t r = 0; r < N; ++r) {
    deinterleave_row(w.x16.view.dtype, w.x16.bytes.data() + r / 16 * 16 * rb, int(r % 16), K, back.data());
    ASSERT_EQ(0, std::memcmp(back.data(), w.plain.data() + r * dtype_row_bytes(t, w.pv.ld), size_t(rb))) << "row " << r;
    weight_row_to_f32(w.pv, r, a.data());
    weight_row_to_f32(w.x16.view, r, b.data());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "row " << r;
  }
  EXPECT_EQ(w.x16.view.at(20, 5), w.pv.at(20, 5));
  // Slices: whole groups of rows, whole blocks of columns, on both layouts alike.
  const int64_t be = dtype_block_elems(t), M = 3;
  const WeightView ps = w.pv.row_slice(16, 21).col_slice(be, 2 * be);
  const WeightView xs = w.x16.view.row_slice(16, 21).col_slice(be, 2 * be);
  const auto x = random_floats(M * 2 * be, 9);
  std::vector<float> yp(M * 21), yx(M * 21);
  matmul(x.data(), M, 2 * be, ps, nullptr, yp.data(), 21);
  matmul(x.data(), M, 2 * be, xs, nullptr, yx.data(), 21);
  EXPECT_EQ(0, std::memcmp(yp.data(), yx.data(), yp.size() * 4));
  EXPECT_THROW(w.x16.view.row_slice(8, 4), Error);       // not the start of a group
  EXPECT_THROW(w.pv.col_slice(be / 2, be), Error);       // not on a block boundary
}

INSTANTIATE_TEST_SUITE_P(Types, QMatmul, ::testing::ValuesIn(kTypes),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// The activation codes do not depend on the code path (every ISA gives the same bytes).
TEST(QuantActs, EveryIsaGivesTheSameCodes) {
  for (int64_t B : {32, 256}) {
    const int64_t M = 5, K = 4 * 256;
    auto x = random_floats(M * K, 17, -3.0f, 3.0f);
    std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero block
    x[300] = 1e-30f;
    QuantActs ref;
    ref.reset(B, M, K);
    quantize_acts(KernelIsa::Portable, x.data(), K, 0, M, ref);
    for (KernelIsa isa : test::supported_isas()) {
      QuantActs a;
      a.reset(B, M, K);
      quantize_acts(isa, x.data(), K, 0, M, a);
      // The whole prepared rows: codes, scales and code sums.
      for (int64_t m = 0; m < M; ++m)
        ASSERT_EQ(0, std::memcmp(a.row(m), ref.row(m), size_t(quant_act_row_bytes(B, K)))) << kernel_isa_name(isa);
    }
    // The definition: d = amax / 127 (f16-rounded for 32-blocks) and codes round-half-even(x * 127 / amax), checked directly.
    const QuantActRow r = ref.view(0);
    for (int64_t b = 0; b < K / B; ++b) {
      float amax = 0;
      for (int64_t k = 0; k < B; ++k) amax = std::max(amax, std::fabs(x[b * B + k]));
      // 32-element blocks keep d rounded to f16 (as llama.cpp's Q8_0 activation blocks).
      ASSERT_EQ(r.d[b], B == 32 ? f16_to_f32(f32_to_f16(amax / 127.0f)) : amax / 127.0f);
      for (int64_t k = 0; k < B; ++k)
        ASSERT_EQ(r.q[b * B + k], amax == 0 ? 0 : int(std::nearbyint(x[b * B + k] * (127.0f / amax))));
    }
    for (int64_t j = 0; j < K / 16; ++j) {
      int s = 0;
      for (int64_t k = 16 * j; k < 16 * j + 16; ++k) s += r.q[k];
      ASSERT_EQ(r.s16[j], s);
      if (j % 2 == 1) {
        ASSERT_EQ(r.s32[j / 2], r.s16[j - 1] + r.s16[j]);
      }
    }
  }
}

TEST(QMatmulErrors, BadShapesAreRejected) {
  std::vector<uint8_t> bytes(34 * 4);
  const WeightView w{bytes.data(), DType::Q8_0, 2, 64, 64};
  std::vector<float> x(64), y(2);
  EXPECT_THROW(matmul(x.data(), 1, 64, WeightView{bytes.data(), DType::Q8_0, 2, 48, 64}, nullptr, y.data(), 2), Error);
  EXPECT_NO_THROW(matmul(x.data(), 1, 64, w, nullptr, y.data(), 2));
  EXPECT_THROW(interleave(WeightView{x.data(), DType::F32, 1, 64, 64}), Error);
}

}  // namespace
}  // namespace dpserve
