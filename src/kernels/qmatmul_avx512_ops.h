// Internal: the AVX-512 operations of the int8 kernel policy (kernels/qmatmul_tile.h), shared by
// qmatmul_avx512.cpp (AVX-512BW dot products) and qmatmul_vnni.cpp (vpdpbusd / vpdpwssd).
// Included inside each file's `#pragma GCC target` region.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace dpserve::kernels::qtile {

struct Avx512Ops {
  using I = __m512i;
  using F = __m512;
  static constexpr int kLanes = 16, kGemvNR = 1, kGemmMR = 4, kGemmNR = 2;
  static I zero() { return _mm512_setzero_si512(); }
  static I load(const void* p) { return _mm512_loadu_si512(p); }
  static I bcast32(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static I set1(int32_t v) { return _mm512_set1_epi32(v); }
  static I set1_8(int v) { return _mm512_set1_epi8(char(v)); }
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_and(I a, I b, I m) { return _mm512_ternarylogic_epi32(a, b, m, 0xf8); }  // a | (b & m)
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I mullo(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static I srai32(I a, int s) { return _mm512_srai_epi32(a, unsigned(s)); }
  static I srli16(I a, int s) { return _mm512_srli_epi16(a, unsigned(s)); }
  template <int S>
  static I shift16(I a) {
    if constexpr (S > 0) return _mm512_slli_epi16(a, S);
    else if constexpr (S < 0) return _mm512_srli_epi16(a, -S);
    else return a;
  }
  static F load_f16(const void* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
  static I load_u8_i32(const void* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
  static I load_i8_i32(const void* p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F addf(F a, F b) { return _mm512_add_ps(a, b); }
  static F neg(F a) { return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(int32_t(0x80000000u)))); }
  static F setf(float v) { return _mm512_set1_ps(v); }
  static __mmask16 lanes(int lo, int hi) { return __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1)); }
  static F load_masked(const float* p, int lo, int hi) { return _mm512_maskz_loadu_ps(lanes(lo, hi), p); }
  static void store_masked(float* p, F v, int lo, int hi) {
    if (lo == 0 && hi == 16) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, lanes(lo, hi), v);
  }
};

}  // namespace dpserve::kernels::qtile
