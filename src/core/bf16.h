// bfloat16 and float16 scalar conversions (round-to-nearest-even, as PyTorch does).
#pragma once

#include <cstdint>
#include <cstring>

namespace dpserve {

using bf16_t = uint16_t;
using f16_t = uint16_t;

inline float bf16_to_f32(bf16_t v) {
  uint32_t u = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_t(u >> 16);
}

inline float f16_to_f32(f16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, overflow to infinity, subnormals kept (as NumPy's astype(float16)).
inline f16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16_t(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return f16_t(sign | 0x7c00u);  // 65520 and up round to infinity
  auto round_shift = [](uint32_t m, int shift) {
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return q;
  };
  const int e = int(a >> 23);
  if (e < 113) {  // below 2^-14: an f16 subnormal (units of 2^-24), or zero
    if (e < 102) return f16_t(sign);
    return f16_t(sign | round_shift((a & 0x7fffffu) | 0x800000u, 126 - e));
  }
  // A carry out of the mantissa correctly bumps the exponent.
  return f16_t(sign | round_shift((uint32_t(e - 112) << 23) | (a & 0x7fffffu), 13));
}

}  // namespace dpserve
