// 8-bit floats of the OCP FP8 formats (what SGLang's --kv-cache-dtype fp8_e4m3 / fp8_e5m2 store):
// E4M3 (bias 7, largest finite 448, no infinities; 0x7f / 0xff are NaN) and E5M2 (bias 15,
// largest finite 57344; IEEE-like, so it is the top byte of an fp16). Scalar conversions: fp32 to
// fp8 rounds to nearest even, keeps subnormals and saturates at the largest finite value; the
// NaN codes are never written.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
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

// fp32 to the format by bit arithmetic (KV rows are encoded at every prefilled token, so no
// library calls): normals drop the low 23 - M mantissa bits rounding to nearest even (a carry
// into the exponent lands on the next exponent's first code, as the codes are contiguous);
// below the smallest normal, x / 2^(minexp - M) rounds to the nearest integer code (0 .. 2^M).
template <int E, int M>
inline uint8_t encode(float x) {
  using F = Format<E, M>;
  uint32_t u = std::bit_cast<uint32_t>(x);
  const uint8_t sign = uint8_t((u >> 24) & 0x80);
  u &= 0x7fffffffu;
  constexpr uint32_t kMaxBits = std::bit_cast<uint32_t>(decode<E, M>(F::kMaxCode));
  if (!(u < kMaxBits)) return sign | F::kMaxCode;  // saturates (infinity and NaN too)
  constexpr uint32_t kMinNormalBits = uint32_t(F::kMinExp + 127) << 23;
  if (u < kMinNormalBits) {
    // Exact scaling by a power of two, then adding 2^23 rounds to an integer, to nearest even
    // (the build keeps IEEE arithmetic: no -ffast-math to fold the sum away).
    const float f = std::bit_cast<float>(u) * float(1 << (M - F::kMinExp));
    return sign | uint8_t((f + 8388608.0f) - 8388608.0f);
  }
  constexpr int kDrop = 23 - M;
  u += ((1u << (kDrop - 1)) - 1) + ((u >> kDrop) & 1u);
  const uint32_t code = (u >> kDrop) - (uint32_t(127 - F::kBias) << M);
  return sign | uint8_t(std::min<uint32_t>(code, F::kMaxCode));
}

}  // namespace fp8_detail

constexpr float fp8_to_f32(fp8_e4m3_t v) { return fp8_detail::kE4M3[v.bits]; }
constexpr float fp8_to_f32(fp8_e5m2_t v) { return fp8_detail::kE5M2[v.bits]; }
inline fp8_e4m3_t f32_to_fp8_e4m3(float x) { return {fp8_detail::encode<4, 3>(x)}; }
inline fp8_e5m2_t f32_to_fp8_e5m2(float x) { return {fp8_detail::encode<5, 2>(x)}; }

// Largest finite values.
inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;

}  // namespace dpserve
