// 8-bit floats of the OCP FP8 formats (what SGLang's --kv-cache-dtype fp8_e4m3 / fp8_e5m2 store):
// E4M3 (bias 7, largest finite 448, no infinities; 0x7f / 0xff are NaN) and E5M2 (bias 15,
// largest finite 57344; IEEE-like, so it is the top byte of an fp16). Scalar conversions: fp32 to
// fp8 rounds to nearest even, keeps subnormals and saturates at the largest finite value; the
// NaN codes are never written.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace dpserve {

// One stored element of each format (distinct types, so kernels can be instantiated per format).
struct fp8_e4m3_t {
  uint8_t bits;
};
struct fp8_e5m2_t {
  uint8_t bits;
};

namespace fp8_detail {

// Format of E exponent and M mantissa bits with IEEE-style subnormals.
template <int E, int M>
struct Format {
  static constexpr int kBias = (1 << (E - 1)) - 1;
  static constexpr int kMinExp = 1 - kBias;  // exponent of the smallest normal
  // E4M3 spends only the all-ones code on NaN; E5M2 spends its whole top exponent on inf / NaN.
  static constexpr uint8_t kMaxCode = E == 4 ? 0x7e : 0x7b;
};

// Value of code c (sign bit included), exact: normals (2^M + m) * 2^(e - bias - M), subnormals
// m * 2^(minexp - M).
template <int E, int M>
constexpr float decode(uint8_t c) {
  using F = Format<E, M>;
  const int e = (c >> M) & ((1 << E) - 1), m = c & ((1 << M) - 1);
  float mag;
  if (e == 0) {
    mag = float(m) / float(1 << (M - F::kMinExp));
  } else {
    // fp32 bits of (1 + m / 2^M) * 2^(e - bias).
    mag = std::bit_cast<float>(uint32_t(e - F::kBias + 127) << 23 | uint32_t(m) << (23 - M));
  }
  return c & 0x80 ? -mag : mag;
}

template <int E, int M>
constexpr std::array<float, 256> table() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) t[size_t(c)] = decode<E, M>(uint8_t(c));
  return t;
}
inline constexpr std::array<float, 256> kE4M3 = table<4, 3>();
inline constexpr std::array<float, 256> kE5M2 = table<5, 2>();

template <int E, int M>
inline uint8_t encode(float x) {
  using F = Format<E, M>;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const float a = std::fabs(x);
  if (!(a > 0.0f)) return sign;  // zero (and NaN, which a scaled row never holds)
  if (a >= decode<E, M>(F::kMaxCode)) return sign | F::kMaxCode;  // saturates (infinity too)
  int e2;
  std::frexp(a, &e2);  // a = f * 2^e2 with f in [0.5, 1): unbiased exponent e2 - 1
  const int ex = std::max(e2 - 1, F::kMinExp);  // subnormals share the smallest normal's step
  // a / step is exact (a power of two), so nearbyint rounds to nearest even once. A carry into the
  // next exponent (q = 2^(M+1)) lands on that exponent's first code, as the codes are contiguous.
  const float q = std::nearbyint(std::ldexp(a, M - ex));
  const int code = ((ex - F::kMinExp) << M) + int(q);
  return sign | uint8_t(std::min(code, int(F::kMaxCode)));
}

}  // namespace fp8_detail

inline float fp8_to_f32(fp8_e4m3_t v) { return fp8_detail::kE4M3[v.bits]; }
inline float fp8_to_f32(fp8_e5m2_t v) { return fp8_detail::kE5M2[v.bits]; }
inline fp8_e4m3_t f32_to_fp8_e4m3(float x) { return {fp8_detail::encode<4, 3>(x)}; }
inline fp8_e5m2_t f32_to_fp8_e5m2(float x) { return {fp8_detail::encode<5, 2>(x)}; }

// Largest finite values.
inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;

}  // namespace dpserve
