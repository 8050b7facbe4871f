// int8 kernels for repacked weights on AVX-512BW without VNNI: the four-byte dot product is
// vpmaddubsw (u8 x s8 pairs to int16) then vpmaddwd with ones (pairs to int32).
#include "kernels/qmatmul_impl.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2"))), apply_to = function)
#endif

#include "kernels/qmatmul_avx512_ops.h"
#include "kernels/qmatmul_tile.h"

namespace dpserve::kernels {

namespace {

struct Bw : qtile::Avx512Ops {
  static constexpr int32_t kQ8Offset = 0;
  static constexpr bool kWideDot = false;
  static I dot4(I acc, I u8, I s8) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u8, s8), _mm512_set1_epi16(1)));
  }
  // Q8_0's bytes are code + 128: back to signed, then |w| x (a with w's sign), exact in int16.
  static I dot4_q8(I acc, I w, I a) {
    const I ws = _mm512_xor_si512(w, _mm512_set1_epi8(char(0x80)));
    const I as = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(ws), _mm512_setzero_si512(), a);
    return dot4(acc, _mm512_abs_epi8(ws), as);
  }
  static I dot2(I acc, I a, I b) { return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b)); }
};

}  // namespace

namespace avx512 {
void qmatmul_block(const QBlockArgs& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  qtile::qmatmul_block<Bw>(t, m0, m1, n0, n1);
}
}  // namespace avx512

}  // namespace dpserve::kernels

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
