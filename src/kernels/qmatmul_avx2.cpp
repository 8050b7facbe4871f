// int8 kernels for repacked weights on AVX2: 8 output rows per ymm (the first or second half of
// each 16-row group), vpmaddubsw + vpmaddwd for the four-byte dot products.
#include "kernels/qmatmul_impl.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#endif

#include "kernels/qmatmul_tile.h"

namespace dpserve::kernels {

namespace {

struct Avx2 {
  using I = __m256i;
  using F = __m256;
  static constexpr int kLanes = 8, kGemvNR = 2, kGemmMR = 2, kGemmNR = 2;
  static constexpr int32_t kQ8Offset = 0;
  static constexpr bool kWideDot = false;
  static I zero() { return _mm256_setzero_si256(); }
  static I load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static I bcast32(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static I set1(int32_t v) { return _mm256_set1_epi32(v); }
  static I set1_8(int v) { return _mm256_set1_epi8(char(v)); }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_and(I a, I b, I m) { return _mm256_or_si256(a, _mm256_and_si256(b, m)); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I mullo(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static I srli16(I a, int s) { return _mm256_srli_epi16(a, s); }
  template <int S>
  static I shift16(I a) {
    if constexpr (S > 0) return _mm256_slli_epi16(a, S);
    else if constexpr (S < 0) return _mm256_srli_epi16(a, -S);
    else return a;
  }
  static I dot4(I acc, I u8, I s8) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
  }
  // Q8_0's bytes are code + 128: back to signed, then |w| x (a with w's sign), exact in int16.
  static I dot4_q8(I acc, I w, I a) {
    const I ws = _mm256_xor_si256(w, _mm256_set1_epi8(char(0x80)));
    return dot4(acc, _mm256_abs_epi8(ws), _mm256_sign_epi8(a, ws));
  }
  static I dot2(I acc, I a, I b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static F load_f16(const void* p) { return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
  static I load_u8_i32(const void* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))); }
  static I load_i8_i32(const void* p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F addf(F a, F b) { return _mm256_add_ps(a, b); }
  static F neg(F a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(int32_t(0x80000000u)))); }
  static F setf(float v) { return _mm256_set1_ps(v); }
  static I lanes(int lo, int hi) {
    const I idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo - 1)), _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx));
  }
  static F load_masked(const float* p, int lo, int hi) { return _mm256_maskload_ps(p, lanes(lo, hi)); }
  static void store_masked(float* p, F v, int lo, int hi) {
    if (lo == 0 && hi == 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, lanes(lo, hi), v);
  }
};

}  // namespace

namespace avx2 {
void qmatmul_block(const QBlockArgs& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  qtile::qmatmul_block<Avx2>(t, m0, m1, n0, n1);
}
}  // namespace avx2

}  // namespace dpserve::kernels

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
