// quantize_row: Q8_0 / Q4_0 bit for bit against llama.cpp's gguf-py; every type's round trip
// through dequantize_row (itself checked against gguf-py) within stated bounds; f32_to_f16.
#include "kernels/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/bf16.h"
#include "kernels/dequant.h"
#include "test_util.h"

namespace dpserve {
namespace {

float f16_bits_to_f32(uint16_t h) { return f16_to_f32(h); }

TEST(F32ToF16, EveryFiniteHalfRoundTripsAndMidpointsRoundToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;  // inf / NaN
    const float f = f16_bits_to_f32(uint16_t(h));
    ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
    // The midpoint to the next larger magnitude rounds to whichever of the two is even.
    const uint16_t next = uint16_t(h + 1);
    if ((next & 0x7c00) == 0x7c00) continue;
    const double mid = (double(f) + double(f16_bits_to_f32(next))) / 2;
    if (float(mid) != mid) continue;  // not representable in fp32 (never for f16 neighbours)
    const uint16_t even = (h & 1) ? next : uint16_t(h);
    ASSERT_EQ(f32_to_f16(float(mid)), even) << std::hex << h;
  }
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to 65536 rounds to even: infinity
  EXPECT_EQ(f32_to_f16(-1e9f), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);             // half the smallest subnormal: tie to 0
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);  // above the tie
  EXPECT_EQ(f32_to_f16(NAN) & 0x7c00, 0x7c00);
}

class QuantizeGgufPy : public ::testing::TestWithParam<DType> {};

TEST_P(QuantizeGgufPy, MatchesBitForBit) {
  const DType t = GetParam();
  const std::string name = dtype_name(t);
  const std::vector<float> x = test::read_fixture_f32("gguf_py/quantize_" + name + ".in.f32");
  const std::vector<uint8_t> want = test::read_fixture("gguf_py/quantize_" + name + ".blocks");
  std::vector<uint8_t> got(want.size());
  ASSERT_EQ(int64_t(want.size()), dtype_row_bytes(t, int64_t(x.size())));
  quantize_row(t, x.data(), got.data(), int64_t(x.size()));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(got[i], want[i]) << name << " byte " << i << " of block " << int64_t(i) / dtype_block_bytes(t);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizeGgufPy, ::testing::Values(DType::Q8_0, DType::Q4_0),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Test rows: Gaussian blocks, plus the awkward ones (all zero, constant, one outlier, all
// positive, all negative, tiny and large magnitudes, a ramp).
std::vector<float> test_row(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = g(rng);
  const int64_t nb = n / 256;
  for (int64_t b = 0; b < nb; ++b) {
    float* p = x.data() + b * 256;
    switch (b % 9) {
      case 1: std::fill(p, p + 256, 0.0f); break;
      case 2: std::fill(p, p + 256, 0.75f); break;
      case 3: p[17] = 40.0f; break;
      case 4: for (int i = 0; i < 256; ++i) p[i] = std::fabs(p[i]) + 0.5f; break;
      case 5: for (int i = 0; i < 256; ++i) p[i] = -std::fabs(p[i]); break;
      case 6: for (int i = 0; i < 256; ++i) p[i] *= 1e-5f; break;
      case 7: for (int i = 0; i < 256; ++i) p[i] *= 300.0f; break;
      case 8: for (int i = 0; i < 256; ++i) p[i] = float(i - 128) / 64.0f; break;
      default: break;
    }
  }
  return x;
}

// Element i of the decoded row with its code replaced: every value the format could have given
// element i under the scales the quantizer stored. Uses only the (gguf-py-checked) decoder.
std::vector<float> alternatives(DType t, const std::vector<uint8_t>& row, int64_t i) {
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  std::vector<uint8_t> blk(row.begin() + i / be * bb, row.begin() + (i / be + 1) * bb);
  const int64_t e = i % be;
  std::vector<float> out, dec(static_cast<size_t>(be));
  auto set_code = [&](int code) {
    switch (t) {
      case DType::Q4_K: {  // sub-block pair c = e / 64 in bytes 16 + 32c; low nibble for the first 32
        uint8_t& b = blk[size_t(16 + 32 * (e / 64) + e % 32)];
        b = (e % 64) < 32 ? uint8_t((b & 0xf0) | code) : uint8_t((b & 0x0f) | (code << 4));
        break;
      }
      case DType::Q5_K: {
        uint8_t& b = blk[size_t(48 + 32 * (e / 64) + e % 32)];
        b = (e % 64) < 32 ? uint8_t((b & 0xf0) | (code & 15)) : uint8_t((b & 0x0f) | ((code & 15) << 4));
        uint8_t& h = blk[size_t(16 + e % 32)];
        const int bit = int(e / 32);
        h = uint8_t((h & ~(1 << bit)) | ((code >> 4) << bit));
        break;
      }
      case DType::Q6_K: {
        const int64_t half = e / 128, l = e % 32, quarter = (e % 128) / 32;
        uint8_t& b = blk[size_t(64 * half + l + (quarter & 1) * 32)];
        b = quarter < 2 ? uint8_t((b & 0xf0) | (code & 15)) : uint8_t((b & 0x0f) | ((code & 15) << 4));
        uint8_t& h = blk[size_t(128 + 32 * half + l)];
        h = uint8_t((h & ~(3 << (2 * quarter))) | ((code >> 4) << (2 * quarter)));
        break;
      }
      default: break;
    }
  };
  const int ncodes = t == DType::Q4_K ? 16 : t == DType::Q5_K ? 32 : 64;
  for (int c = 0; c < ncodes; ++c) {
    set_code(c);
    dequantize_row(t, blk.data(), dec.data(), be);
    out.push_back(dec[size_t(e)]);
  }
  return out;
}

class QuantizeRoundTrip : public ::testing::TestWithParam<DType> {};
// Only the K types: Q8_0 / Q4_0 follow ggml's reference rounding, checked bit for bit above.
class QuantizeKType : public ::testing::TestWithParam<DType> {};

// The K types: every element gets the code whose decoded value is nearest to it (under the
// scales stored in its block), checked by trying every code through the decoder.
TEST_P(QuantizeKType, PicksTheNearestCode) {
  const DType t = GetParam();
  const int64_t n = 9 * 256;
  const std::vector<float> x = test_row(n, 3);
  std::vector<uint8_t> q(size_t(dtype_row_bytes(t, n)));
  quantize_row(t, x.data(), q.data(), n);
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, q.data(), y.data(), n);
  for (int64_t i = 0; i < n; i += 3) {
    float best = INFINITY;
    for (float v : alternatives(t, q, i)) best = std::min(best, std::fabs(v - x[i]));
    ASSERT_LE(std::fabs(y[i] - x[i]), best) << dtype_name(t) << " element " << i;
  }
}

// Error against the data: per element and RMS. Bounds, as fractions of a uniform quantizer
// with the same number of levels spread over each block's own range (min..max, or -amax..amax
// for the symmetric types) -- i.e. what the format could do with exact, unquantized scales:
//   Q8_0: codes round(x / d) with d = amax/127: |err| <= d/2 plus the f16 rounding of d times
//         the code (which is what makes tiny blocks, with d an f16 subnormal, coarse).
//   Q4_0: as ggml's reference: the value of largest magnitude takes code 0 = -8 d, so the far
//         end (+8 d) is clipped to 7 d: |err| <= d, plus the same f16 term.
//   K types: RMS error within 10 % of the uniform quantizer's over 256-element blocks of
//         Gaussian data (the 6-bit scale and min codes cost a little, the fitted scales gain a
//         little; measured 0.86-1.0).
TEST_P(QuantizeRoundTrip, ErrorWithinBounds) {
  const DType t = GetParam();
  const int64_t n = 64 * 256;
  const std::vector<float> x = test_row(n, 7);
  std::vector<uint8_t> q(size_t(dtype_row_bytes(t, n)));
  quantize_row(t, x.data(), q.data(), n);
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, q.data(), y.data(), n);
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  double err2 = 0, ideal2 = 0;
  for (int64_t b = 0; b < n / be; ++b) {
    const float* xb = x.data() + b * be;
    const float* yb = y.data() + b * be;
    if (t == DType::Q8_0 || t == DType::Q4_0) {
      uint16_t d16;
      std::memcpy(&d16, q.data() + b * bb, 2);
      const double d = std::fabs(f16_to_f32(d16));
      double amax = 0;
      for (int64_t i = 0; i < be; ++i) amax = std::max(amax, double(std::fabs(xb[i])));
      // d is stored as f16: off by at most 2^-11 relative, or 2^-25 absolute below f16's normal
      // range; the codes were chosen with the exact d, so code c (|c| <= 128) moves by c times that.
      const double d_exact = amax / (t == DType::Q8_0 ? 127.0 : 8.0);
      const double f16_err = std::max(d_exact * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
      const double bound = (t == DType::Q8_0 ? 0.5 * d : d) + 128 * f16_err + 1e-30;
      for (int64_t i = 0; i < be; ++i)
        ASSERT_LE(std::fabs(double(yb[i]) - xb[i]), bound) << dtype_name(t) << " block " << b << " elem " << i;
      continue;
    }
    if (b % 9 != 0) continue;  // RMS statistics on the Gaussian blocks only
    const int sub = t == DType::Q6_K ? 16 : 32;
    const int levels = t == DType::Q4_K ? 16 : t == DType::Q5_K ? 32 : 64;
    for (int64_t s = 0; s < be; s += sub) {
      double lo = xb[s], hi = xb[s];
      for (int64_t i = s; i < s + sub; ++i) {
        lo = std::min(lo, double(xb[i]));
        hi = std::max(hi, double(xb[i]));
        err2 += (double(yb[i]) - xb[i]) * (double(yb[i]) - xb[i]);
      }
      if (t == DType::Q6_K) hi = std::max(std::fabs(lo), std::fabs(hi)), lo = -hi;
      const double step = (hi - lo) / (levels - 1);
      ideal2 += sub * step * step / 12.0;
    }
  }
  if (t == DType::Q8_0 || t == DType::Q4_0) return;
  const double ratio = std::sqrt(err2 / ideal2);
  EXPECT_LT(ratio, 1.1) << dtype_name(t) << ": RMS error " << std::sqrt(err2 / (n / 9.0)) << " is " << ratio
                        << " of the uniform quantizer's";
  std::printf("%s: RMS error / uniform quantizer's = %.3f\n", dtype_name(t), ratio);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizeKType, ::testing::Values(DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

INSTANTIATE_TEST_SUITE_P(Types, QuantizeRoundTrip,
                         ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Quantize, RejectsPartialBlocksAndFloatTypes) {
  std::vector<float> x(40);
  std::vector<uint8_t> out(64);
  EXPECT_ANY_THROW(quantize_row(DType::Q8_0, x.data(), out.data(), 40));
  EXPECT_ANY_THROW(quantize_row(DType::BF16, x.data(), out.data(), 32));
  EXPECT_FALSE(can_quantize(DType::Q4_0_X16));
}

}  // namespace
}  // namespace dpserve
