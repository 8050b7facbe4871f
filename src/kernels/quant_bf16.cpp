#include "kernels/quant_bf16.h"

#include <immintrin.h>

#include <algorithm>  // what qmatmul_tile.h includes, before the target region: std code stays generic
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "core/cpu.h"
#include "kernels/dequant.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/repack.h"

namespace dpserve {

namespace {

constexpr int kRows = 16;

// Any CPU: each row's blocks back in plain form, decoded by the reference and rounded.
void group_to_bf16_rows(DType t, const uint8_t* g0, int64_t n, uint16_t* dst) {
  const DType p = dtype_plain(t);
  std::vector<uint8_t> plain(static_cast<size_t>(dtype_row_bytes(p, n)));
  std::vector<float> f(static_cast<size_t>(n));
  for (int r = 0; r < kRows; ++r) {
    deinterleave_row(t, g0, r, n, plain.data());
    dequantize_row(p, plain.data(), f.data(), n);
    for (int64_t k = 0; k < n; ++k) dst[k / 2 * 32 + 2 * r + (k & 1)] = f32_to_bf16(f[size_t(k)]);
  }
}

}  // namespace

}  // namespace dpserve

#if defined(__clang__)  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,f16c,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,f16c,avx2,fma")
#endif

#include "kernels/qmatmul_tile.h"  // decode_k_scales

namespace dpserve {

namespace {

#define DP_AINLINE inline __attribute__((always_inline))

// Within each 32-bit lane (a row), byte i moved to the low byte and the rest zeroed: the shuffle
// that takes element 4g + i of every row out of a k-group.
DP_AINLINE __m512i byte_of_lanes(int i) {
  const int z = 0x80;
  return _mm512_broadcast_i32x4(_mm_setr_epi8(char(i), z, z, z, char(4 + i), z, z, z, char(8 + i), z, z, z,
                                              char(12 + i), z, z, z));
}

// Word 2r of the result is word r of x, word 2r + 1 is word 16 + r: two vectors of 16 rows as
// one vector of their pairs.
alignas(64) constexpr uint16_t kPairWords[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

struct Lanes {
  __m512i sel[4];
  __m512i pairs;
  Lanes() {
    for (int i = 0; i < 4; ++i) sel[i] = byte_of_lanes(i);
    pairs = _mm512_load_si512(kPairWords);
  }
};

// One k-group of 16 rows (byte 4r + i: the unsigned code of element 4g + i of row r) as the
// pairs 2g and 2g + 1 at dst: each value (q - off) d[r], less m[r] with kMin, with the reference
// decoder's bits: q - off is exact in fp32, and where a min is subtracted (Q4_K, Q5_K) the product
// d[r] q is exact too (an f16 times a 6-bit scale times a 5-bit code: 22 bits), so fusing the
// difference rounds once, as the decoder's subtraction does.
template <bool kOff, bool kMin>
DP_AINLINE void kgroup(const Lanes& L, __m512i codes, __m512 off, __m512 d, __m512 m, uint16_t* dst) {
  __m512 v[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    __m512 q = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(codes, L.sel[i]));
    if (kOff) q = _mm512_sub_ps(q, off);
    v[i] = kMin ? _mm512_fmsub_ps(q, d, m) : _mm512_mul_ps(q, d);
  }
  _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(L.pairs, (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0])));
  _mm512_storeu_si512(dst + 32, _mm512_permutexvar_epi16(L.pairs, (__m512i)_mm512_cvtne2ps_pbh(v[3], v[2])));
}

DP_AINLINE __m512 load_f16x16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Bytes shifted left by s (right by -s) within 16-bit words; masks keep whole bytes.
DP_AINLINE __m512i shift16(__m512i v, int s) {
  return s >= 0 ? _mm512_sll_epi16(v, _mm_cvtsi32_si128(s)) : _mm512_srl_epi16(v, _mm_cvtsi32_si128(-s));
}

// Each of these converts `nb` blocks from g (the range's first block), element e of the range to
// pair e / 2 at dst + 32 (e / 2). Every value is an integer multiple of 2^-24 (an f16 scale times
// small integers, exact in fp32, less another such), so none is subnormal, which vcvtne2ps2bf16
// would flush to zero where the reference's rounding keeps it.
void q8_0(const uint8_t* g, int64_t nb, uint16_t* dst) {
  const Lanes L;
  const __m512 off = _mm512_set1_ps(128.0f);  // stored code + 128
  for (int64_t b = 0; b < nb; ++b, g += 544, dst += 32 * kRows) {
    const __m512 d = load_f16x16(g);
    for (int k = 0; k < 8; ++k)
      kgroup<true, false>(L, _mm512_loadu_si512(g + 32 + 64 * k), off, d, d, dst + 64 * k);
  }
}

void q4_0(const uint8_t* g, int64_t nb, uint16_t* dst) {
  const Lanes L;
  const __m512 off = _mm512_set1_ps(8.0f);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; ++b, g += 288, dst += 32 * kRows) {
    const __m512 d = load_f16x16(g);
    for (int c = 0; c < 4; ++c) {  // nibble chunk c: k-group 2c low, 2c + 1 high
      const __m512i raw = _mm512_loadu_si512(g + 32 + 64 * c);
      kgroup<true, false>(L, _mm512_and_si512(raw, m4), off, d, d, dst + 128 * c);
      kgroup<true, false>(L, _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4), off, d, d, dst + 128 * c + 64);
    }
  }
}

// Q4_K / Q5_K: d, dmin, the scales (decoded per superblock), then 8 sub-blocks of 32 elements,
// each (Q5_K) 64 bytes of fifth bits and 4 nibble chunks.
template <bool kFive>
void qk(const uint8_t* g, int64_t nb, uint16_t* dst) {
  constexpr int64_t kBytes = kFive ? 2816 : 2304, kSub = kFive ? 320 : 256;
  const Lanes L;
  const __m512i m4 = _mm512_set1_epi8(0x0f), m10 = _mm512_set1_epi8(0x10), lo16 = _mm512_set1_epi32(0xffff);
  alignas(64) uint8_t dec[kernels::qtile::kKScaleBytes];
  for (int64_t b = 0; b < nb; ++b, g += kBytes, dst += 256 * kRows) {
    const __m512 d = load_f16x16(g), dmin = load_f16x16(g + 32);
    kernels::qtile::decode_k_scales<true>(g + 64, dec);
    for (int s = 0; s < 8; ++s) {
      // Sub-block s's scale and min of each row: scales as bytes, mins as int16 pairs (qmatmul_tile.h).
      const __m512 d1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128(
                                              reinterpret_cast<const __m128i*>(dec + 16 * s)))));
      const __m512i mp = _mm512_load_si512(dec + 128 + 64 * (s / 2));
      const __m512i mn = s % 2 ? _mm512_srli_epi32(mp, 16) : _mm512_and_si512(mp, lo16);
      const __m512 m1 = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn));
      const uint8_t* sub = g + 256 + kSub * s;
      const __m512i hb = kFive ? _mm512_loadu_si512(sub) : _mm512_setzero_si512();
      uint16_t* out = dst + 32 * kRows * s;
      for (int c = 0; c < 4; ++c) {
        const __m512i raw = _mm512_loadu_si512(sub + (kFive ? 64 : 0) + 64 * c);
        __m512i q0 = _mm512_and_si512(raw, m4), q1 = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
        if (kFive) {  // bit g of hb is the fifth bit of k-group g (2c and 2c + 1), moved to bit 4
          q0 = _mm512_ternarylogic_epi32(q0, shift16(hb, 4 - 2 * c), m10, 0xf8);
          q1 = _mm512_ternarylogic_epi32(q1, shift16(hb, 3 - 2 * c), m10, 0xf8);
        }
        kgroup<false, true>(L, q0, d1, d1, m1, out + 128 * c);
        kgroup<false, true>(L, q1, d1, d1, m1, out + 128 * c + 64);
      }
    }
  }
}

// Q6_K: d, 16 int8 scales of 16 elements, then per 32 elements 4 nibble chunks and 2 vectors of
// top bit pairs (bits 2t of vector v: k-group 4v + t).
void q6_k(const uint8_t* g, int64_t nb, uint16_t* dst) {
  const Lanes L;
  const __m512 off = _mm512_set1_ps(32.0f);
  const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
  for (int64_t b = 0; b < nb; ++b, g += 3360, dst += 256 * kRows) {
    const __m512 d = load_f16x16(g);
    __m512 ds[16];
    for (int j = 0; j < 16; ++j)
      ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 32 + 16 * j)))));
    for (int s = 0; s < 8; ++s) {
      const uint8_t* blk = g + 288 + 384 * s;
      uint16_t* out = dst + 32 * kRows * s;
      for (int kg = 0; kg < 8; ++kg) {
        const __m512i raw = _mm512_loadu_si512(blk + 64 * (kg / 2));
        const __m512i lo = _mm512_and_si512(kg % 2 ? _mm512_srli_epi16(raw, 4) : raw, m4);
        const __m512i hv = _mm512_loadu_si512(blk + 256 + 64 * (kg / 4));
        const __m512i code = _mm512_or_si512(lo, _mm512_and_si512(shift16(hv, 4 - 2 * (kg % 4)), m30));
        // k-groups 0-3 are the block's first 16 elements (scale 2s), 4-7 the next (2s + 1).
        kgroup<true, false>(L, code, off, ds[2 * s + kg / 4], ds[0], out + 64 * kg);
      }
    }
  }
}

void group_to_bf16_avx512(DType t, const uint8_t* g0, int64_t nb, uint16_t* dst) {
  switch (t) {
    case DType::Q8_0_X16: return q8_0(g0, nb, dst);
    case DType::Q4_0_X16: return q4_0(g0, nb, dst);
    case DType::Q4_K_X16: return qk<false>(g0, nb, dst);
    case DType::Q5_K_X16: return qk<true>(g0, nb, dst);
    case DType::Q6_K_X16: return q6_k(g0, nb, dst);
    default: fail("quant_group_to_bf16: {} is not a repacked quantized type", dtype_name(t));
  }
}

}  // namespace

}  // namespace dpserve

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace dpserve {

void quant_group_to_bf16(DType t, const uint8_t* group, int64_t k0, int64_t k1, uint16_t* dst) {
  const bool repacked_quant = dtype_is_quantized(t) && dtype_row_group(t) == kRows;
  if (!repacked_quant) fail("quant_group_to_bf16: {} is not a repacked quantized type", dtype_name(t));
  const int64_t be = dtype_block_elems(t);
  DP_CHECK(k0 >= 0 && k0 <= k1 && k0 % be == 0 && k1 % be == 0, "quant_group_to_bf16: bad range");
  const uint8_t* g0 = group + k0 / be * dtype_block_bytes(t) * kRows;
  if (cpu_features().avx512bf16) return group_to_bf16_avx512(t, g0, (k1 - k0) / be, dst);
  group_to_bf16_rows(t, g0, k1 - k0, dst);
}

}  // namespace dpserve
