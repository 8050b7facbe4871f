// int8 kernels for repacked weights on AVX-512 VNNI: vpdpbusd (four u8 x s8 products into an
// int32 lane) and vpdpwssd (two int16 x int16). Q8_0's bytes are stored as code + 128 so they can
// be vpdpbusd's unsigned operand; the block then subtracts 128 x the activation codes' sum.
#include "kernels/qmatmul_impl.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2"))), apply_to = function)
#endif

#include "kernels/qmatmul_avx512_ops.h"
#include "kernels/qmatmul_tile.h"

namespace dpserve::kernels {

namespace {

struct Vnni : qtile::Avx512Ops {
  static constexpr int32_t kQ8Offset = 128;
  static constexpr bool kWideDot = true;
  static I dot4(I acc, I u8, I s8) { return _mm512_dpbusd_epi32(acc, u8, s8); }
  // dot4 with the four s8 bytes at p broadcast by the instruction itself ({1to16}): one fused
  // micro-op instead of a broadcast and a dot (GCC does not fold the broadcast into vpdpbusd).
  static I dot4_bcast(I acc, I u8, const int8_t* p) {
    using Word = int32_t __attribute__((may_alias));
    asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*reinterpret_cast<const Word*>(p)));
    return acc;
  }
  static I dot4_q8(I acc, I w, I a) { return _mm512_dpbusd_epi32(acc, w, a); }
  static I dot2(I acc, I a, I b) { return _mm512_dpwssd_epi32(acc, a, b); }
};

}  // namespace

namespace vnni {
void qmatmul_block(const QBlockArgs& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  qtile::qmatmul_block<Vnni>(t, m0, m1, n0, n1);
}
}  // namespace vnni

}  // namespace dpserve::kernels

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
