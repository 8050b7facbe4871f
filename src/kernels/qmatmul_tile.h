// Internal: the int8 kernels for repacked (*_X16, kernels/repack.h) weights, shared by
// qmatmul_avx2.cpp, qmatmul_avx512.cpp and qmatmul_vnni.cpp. Each includes this inside its
// `#pragma GCC target` region with a file-local policy P:
//
//   I, F            int32 / fp32 vectors of kLanes lanes (16: zmm, 8: ymm); a lane is an output row
//   kGemvNR, kGemmMR, kGemmNR   tile shapes (lane tiles x activation rows)
//   zero load bcast32 set1 set1_8 and_ or_and(a, b, m) = a | (b & m) add mullo
//   srli16 shift16<s>   16-bit lane shifts (shift16: left by s, or right by -s); whole-byte masks
//                       make them byte shifts
//   dot4(acc, u8, s8)   acc + per lane the sum of four u8 x s8 products (no saturation for our
//                       codes: at most 63 x 127 x 2 per pair)
//   dot4_q8(acc, w, a)  the same for Q8_0's stored bytes (code + 128); kQ8Offset says whether
//                       the result still carries + 128 * sum(a) (vpdpbusd) or not (sign trick)
//   dot2(acc, i16, i16) acc + per lane the sum of two int16 x int16 products
//   load_f16 load_u8_i32 load_i8_i32 (16 / 8 bytes widened to int32 lanes)
//   cvt fma mul neg setf store_masked
//
// Every path computes each block's integer dot exactly and then the fp32 steps of
// kernels/qmatmul.h in the same order, so it matches the scalar reference bit for bit.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <type_traits>

#include "kernels/qmatmul.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/quant_act.h"

namespace dpserve::kernels::qtile {

// The tile loops must be one function: a call boundary would put the accumulators in memory.
#define DP_QINLINE inline __attribute__((always_inline))

// kLanes consecutive output rows inside one 16-row group: the group's bytes and where the tile's
// rows sit in the group's 64-byte (4 bytes a row), 32-byte (f16) and 16-byte (u8) row vectors.
struct Tile {
  const uint8_t* g = nullptr;
  int off4 = 0, off2 = 0, off1 = 0;
  int64_t row0 = 0;
  int64_t ahead = 0;  // how far ahead of the reads the group's bytes are prefetched (0: not)
  bool l2 = false;    // prefetched into L2 (prefetcht1) instead of L1 (kernels/qmatmul.h)
  int64_t near = 0;   // with l2: also prefetched this far ahead into L1 (0: not)
  // Q4_K / Q5_K scales and mins, decoded (decode_k_scales, kKScaleBytes per superblock) into
  // `scales` if set, and read from there once `scales_decoded` (the first of several row tiles
  // decodes them for the others); without `scales`, decoded into a local buffer as the tile goes.
  uint8_t* scales = nullptr;
  bool scales_decoded = false;
};

// Prefetches the group bytes [at, at + bytes) + ahead (and + near into L1, after a far prefetch
// into L2), a line at a time, for each lane tile that starts a group (8-lane tiles share their
// group with the tile beside them). The kernels call it for each slice of a block as they start
// reading it, so the prefetches are spread over the work instead of issued in bursts. kStream
// false: a tile that reads its groups from cache, compiled without any of it.
template <int NR, bool kStream>
DP_QINLINE void stream_ahead(const Tile* tl, int64_t at, int64_t bytes) {
  if (!kStream || tl[0].ahead == 0) return;
#pragma GCC unroll 2
  for (int j = 0; j < NR; ++j) {
    if (tl[j].off4 != 0) continue;
    const uint8_t* p = tl[j].g + at + tl[j].ahead;
    if (tl[j].l2) {
      for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 2);
      if (tl[j].near == 0) continue;
      const uint8_t* q = tl[j].g + at + tl[j].near;
      for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(q + o);
    } else
      for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
  }
}

// Activation rows of one tile of MR rows.
template <int MR>
struct Acts {
  const int8_t* q[MR];
  const float* d[MR];
  const int32_t* s32[MR];
  const int16_t* s32h[MR];
  const int16_t* s16[MR];
  Acts(const QBlockArgs& a, const QuantActLayout& L, int64_t m) {
    for (int i = 0; i < MR; ++i) {
      const QuantActRow r(static_cast<const uint8_t*>(a.act) + (m + i) * a.act_ld, L);
      q[i] = r.q;
      d[i] = r.d;
      s32[i] = r.s32;
      s32h[i] = r.s32h;
      s16[i] = r.s16;
    }
  }
};

template <class P, int MR, int NR>
using Acc = typename P::F[MR][NR];

// Q8_0 (544 bytes per 16-row block): 8 k-groups of 64 bytes after 16 f16 scales. Prefetched in
// software (stream_ahead) only into L2 (the Intel default): there the hardware prefetchers alone
// streamed it at 0.76 of the read bandwidth and 4096 bytes ahead took single-stream decode 1.08-1.12x
// faster; on Zen 5 they keep up, and the extra instructions made decode 2-7 % slower.
struct Q8_0K {
  static constexpr int64_t kElems = 32, kBytes = 544;
  template <class P, int MR, int NR, bool kStream>
  DP_QINLINE static void run(const Tile* tl, const QBlockArgs& qa, const QuantActLayout& L, int64_t m, int64_t nb,
                             Acc<P, MR, NR>& acc) {
    using I = typename P::I;
    using F = typename P::F;
    const Acts<MR> a(qa, L, m);
    const bool prefetch = tl[0].l2;
    for (int64_t b = 0; b < nb; ++b) {
      if (prefetch) stream_ahead<NR, kStream>(tl, b * kBytes, kBytes);
      // D starts at minus the code offset's share (exact integers: the same D as subtracting it
      // after the dot, one operation per activation row instead of one per output vector).
      I D[MR][NR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const I neg_corr = P::set1(-P::kQ8Offset * a.s32[i][b]);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) D[i][j] = neg_corr;
      }
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        I w[NR];
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          w[j] = P::load(tl[j].g + b * kBytes + 32 + 64 * g + tl[j].off4);
          // Keep w in a register for the MR rows: GCC may otherwise load it again for each row,
          // and in every other 544-byte block those 64-byte loads straddle two cache lines (a
          // profile of the 512-row GEMM saw that codegen, 1.45x slower).
          asm("" : "+v"(w[j]));
        }
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
          const I x = P::bcast32(a.q[i] + 32 * b + 4 * g);
#pragma GCC unroll 4
          for (int j = 0; j < NR; ++j) D[i][j] = P::dot4_q8(D[i][j], w[j], x);
        }
      }
      F dw[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        dw[j] = P::load_f16(tl[j].g + b * kBytes + tl[j].off2);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const F da = P::setf(a.d[i][b]);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) acc[i][j] = P::fma(P::cvt(D[i][j]), P::mul(dw[j], da), acc[i][j]);
      }
    }
  }
};

// A GEMV tile's one accumulator per output vector would chain all of a sub-block's dot products
// (their latency, not the ports, set the pace: in cache the core waited on that chain, then on
// the scale's vpmulld after it). The later chunks go to a second accumulator, folded in at the
// end: the same integer sum. GEMM tiles have enough independent accumulators already.
template <class P, int MR, int NR>
struct SplitAcc {
  using I = typename P::I;
  static constexpr bool kOn = MR * NR <= 2;
  I E[MR][NR];
  DP_QINLINE SplitAcc() {
    if constexpr (kOn)
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) E[i][j] = P::zero();
  }
  // Output (i, j)'s accumulator of an earlier (D) or later chunk becomes f(it). No reference to
  // D leaves this function: one made GCC keep a GEMM tile's D in memory (Q4_K GEMM 4 % slower on
  // Zen 5, where kOn is false and E unused).
  template <class Fn>
  DP_QINLINE void update(I (&D)[MR][NR], int i, int j, bool later, Fn f) {
    if (kOn && later)
      E[i][j] = f(E[i][j]);
    else
      D[i][j] = f(D[i][j]);
  }
  DP_QINLINE void fold(I (&D)[MR][NR]) {
    if constexpr (kOn)
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) D[i][j] = P::add(D[i][j], E[i][j]);
  }
};

// dot4 against the four activation bytes at p (x: their broadcast). A one-lane-tile GEMV uses each
// broadcast once, so where the policy has it, vpdpbusd broadcasts them itself ({1to16}: one fused
// micro-op, not two); wider tiles share one broadcast among their lane tiles.
template <class P, int NR>
DP_QINLINE typename P::I dot4_word(typename P::I acc, typename P::I u8, typename P::I x, const int8_t* p) {
  if constexpr (NR == 1 && requires { P::dot4_bcast(acc, u8, p); })
    return P::dot4_bcast(acc, u8, p);
  else
    return P::dot4(acc, u8, x);
}

// Four 64-byte nibble chunks (one 32-element sub-block): chunk c holds k-groups 2c (low nibbles)
// and 2c + 1 (high) of the tile's rows. D += their dots with activation bytes x[0..32).
// With a dot4 that does not saturate (P::kWideDot: vpdpbusd), the high nibbles stay in place as
// 16 x code (at most 240 x 127 x 4 a lane) and go to their own accumulator, shifted down once per
// sub-block (the sum is a multiple of 16, so exactly): one masking op a chunk instead of a shift
// and a mask (Q4_K decode 1.02x on an Intel Xeon). A saturating pairwise dot (vpmaddubsw) would
// clip 240 x 127 x 2, so it shifts; so do GEMM tiles, which have no registers for the second set.
template <class P, int MR, int NR>
DP_QINLINE void nibble_subblock(const Tile* tl, int64_t byte0, const int8_t* const* x, int64_t k0,
                            typename P::I (&D)[MR][NR]) {
  using I = typename P::I;
  const I m4 = P::set1_8(0x0f);
  if constexpr (P::kWideDot && MR * NR <= 2) {
    const I m4h = P::set1_8(int8_t(0xf0));
    I H[MR][NR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) H[i][j] = P::zero();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      I lo[NR], hi16[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        I raw = P::load(tl[j].g + byte0 + 64 * c + tl[j].off4);
        asm("" : "+v"(raw));  // one load for both masks (GCC folded it into each)
        lo[j] = P::and_(raw, m4);
        hi16[j] = P::and_(raw, m4h);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const int8_t* w = x[i] + k0 + 8 * c;
        const I x0 = P::bcast32(w), x1 = P::bcast32(w + 4);  // unused (and dropped) for one lane tile
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          D[i][j] = dot4_word<P, NR>(D[i][j], lo[j], x0, w);
          H[i][j] = dot4_word<P, NR>(H[i][j], hi16[j], x1, w + 4);
        }
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) D[i][j] = P::add(D[i][j], P::srai32(H[i][j], 4));
    return;
  }
  SplitAcc<P, MR, NR> split;  // chunks 2-3
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    I lo[NR], hi[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const I raw = P::load(tl[j].g + byte0 + 64 * c + tl[j].off4);
      lo[j] = P::and_(raw, m4);
      hi[j] = P::and_(P::srli16(raw, 4), m4);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const I x0 = P::bcast32(x[i] + k0 + 8 * c), x1 = P::bcast32(x[i] + k0 + 8 * c + 4);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        split.update(D, i, j, c >= 2, [&](I acc) __attribute__((always_inline)) {
          return P::dot4(P::dot4(acc, lo[j], x0), hi[j], x1);
        });
      }
    }
  }
  split.fold(D);
}

// Q4_0 (288 bytes per 16-row block): 16 f16 scales, one nibble sub-block; codes offset by 8.
struct Q4_0K {
  static constexpr int64_t kElems = 32, kBytes = 288;
  template <class P, int MR, int NR, bool kStream>
  DP_QINLINE static void run(const Tile* tl, const QBlockArgs& qa, const QuantActLayout& L, int64_t m, int64_t nb,
                             Acc<P, MR, NR>& acc) {
    using I = typename P::I;
    using F = typename P::F;
    const Acts<MR> a(qa, L, m);
    for (int64_t b = 0; b < nb; ++b) {
      stream_ahead<NR, kStream>(tl, b * kBytes, kBytes);
      // D starts at minus the code offset's share (exact integers: the same D as subtracting it
      // after the dot, one operation per activation row instead of one per output vector).
      I D[MR][NR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const I neg_corr = P::set1(-8 * a.s32[i][b]);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) D[i][j] = neg_corr;
      }
      nibble_subblock<P, MR, NR>(tl, b * kBytes + 32, a.q, 32 * b, D);
      F dw[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        dw[j] = P::load_f16(tl[j].g + b * kBytes + tl[j].off2);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const F da = P::setf(a.d[i][b]);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) acc[i][j] = P::fma(P::cvt(D[i][j]), P::mul(dw[j], da), acc[i][j]);
      }
    }
  }
};

// The eight 6-bit scales and mins of 16 rows of a Q4_K / Q5_K superblock, decoded: kKScaleBytes
// bytes per superblock, the scales sc[j][row] (8 x 16 bytes) and then the mins as int16 pairs
// (mn[2p][row] | mn[2p + 1][row] << 16 in int32 `row` of vector p, 4 x 16 x 4 bytes).
inline constexpr int64_t kKScaleBytes = 128 + 256;

// Decodes the 12 x 16 transposed scale bytes at `s` with 128-bit byte operations. kWide (AVX-512
// callers) writes each 64-byte vector of mins with one store: the kernel reads them back at once
// as 64 bytes, which four 16-byte stores cannot forward to (the load then waits for the stores
// to reach the cache).
template <bool kWide = false>
inline void decode_k_scales(const uint8_t* s, uint8_t* out) {
  __m128i v[12];
  for (int i = 0; i < 12; ++i) v[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16 * i));
  const __m128i m63 = _mm_set1_epi8(63), m15 = _mm_set1_epi8(15), m30 = _mm_set1_epi8(0x30);
  __m128i mn[8];
  for (int j = 0; j < 4; ++j) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16 * j), _mm_and_si128(v[j], m63));
    mn[j] = _mm_and_si128(v[j + 4], m63);
    // Sub-block j + 4: low four bits from byte 8 + j, top two from the spare bits of j / j + 4.
    const __m128i hs = _mm_and_si128(_mm_srli_epi16(v[j], 2), m30), hm = _mm_and_si128(_mm_srli_epi16(v[j + 4], 2), m30);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16 * (j + 4)), _mm_or_si128(_mm_and_si128(v[j + 8], m15), hs));
    mn[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(v[j + 8], 4), m15), hm);
  }
  if constexpr (kWide) {
    // int32 lane r of vector p: mn[2p][r] | mn[2p + 1][r] << 16.
    for (int p = 0; p < 4; ++p)
      _mm512_storeu_si512(out + 128 + 64 * p, _mm512_or_si512(_mm512_cvtepu8_epi32(mn[2 * p]),
                                                              _mm512_slli_epi32(_mm512_cvtepu8_epi32(mn[2 * p + 1]), 16)));
    return;
  }
  const __m128i z = _mm_setzero_si128();
  for (int p = 0; p < 4; ++p) {
    // Bytes to int16 (zero-extended), then the two sub-blocks' int16 interleaved: int32 lanes a | b << 16.
    const __m128i a_lo = _mm_unpacklo_epi8(mn[2 * p], z), a_hi = _mm_unpackhi_epi8(mn[2 * p], z);
    const __m128i b_lo = _mm_unpacklo_epi8(mn[2 * p + 1], z), b_hi = _mm_unpackhi_epi8(mn[2 * p + 1], z);
    __m128i* dst = reinterpret_cast<__m128i*>(out + 128 + 64 * p);
    _mm_storeu_si128(dst + 0, _mm_unpacklo_epi16(a_lo, b_lo));
    _mm_storeu_si128(dst + 1, _mm_unpackhi_epi16(a_lo, b_lo));
    _mm_storeu_si128(dst + 2, _mm_unpacklo_epi16(a_hi, b_hi));
    _mm_storeu_si128(dst + 3, _mm_unpackhi_epi16(a_hi, b_hi));
  }
}

// Q4_K (2304 B) and Q5_K (2816 B) per 16-row superblock: d, dmin, scales, 8 sub-blocks.
template <bool kFive>
struct QkK {
  static constexpr int64_t kElems = 256, kBytes = kFive ? 2816 : 2304, kSub = kFive ? 320 : 256;

  // Sub-block with fifth bits: as nibble_subblock, each code or-ed with its bit from `hb`.
  template <class P, int MR, int NR>
  DP_QINLINE static void five_bit_subblock(const Tile* tl, int64_t byte0, const int8_t* const* x, int64_t k0,
                                typename P::I (&D)[MR][NR]) {
    using I = typename P::I;
    const I m4 = P::set1_8(0x0f), m10 = P::set1_8(0x10);
    I hb[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) hb[j] = P::load(tl[j].g + byte0 + tl[j].off4);
    SplitAcc<P, MR, NR> split;  // chunks 2-3
    auto chunk = [&]<int C>() __attribute__((always_inline)) {
      I lo[NR], hi[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        I raw = P::load(tl[j].g + byte0 + 64 + 64 * C + tl[j].off4);
        asm("" : "+v"(raw));  // loaded once (GCC folded it into the mask and the shift)
        // Bit g of hb is the fifth bit of k-group g: move it to bit 4 of each byte.
        lo[j] = P::or_and(P::and_(raw, m4), P::template shift16<4 - 2 * C>(hb[j]), m10);
        hi[j] = P::or_and(P::and_(P::srli16(raw, 4), m4), P::template shift16<3 - 2 * C>(hb[j]), m10);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const I x0 = P::bcast32(x[i] + k0 + 8 * C), x1 = P::bcast32(x[i] + k0 + 8 * C + 4);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          const int8_t* w = x[i] + k0 + 8 * C;
          split.update(D, i, j, C >= 2, [&](I acc) __attribute__((always_inline)) {
            return dot4_word<P, NR>(dot4_word<P, NR>(acc, lo[j], x0, w), hi[j], x1, w + 4);
          });
        }
      }
    };
    chunk.template operator()<0>();
    chunk.template operator()<1>();
    chunk.template operator()<2>();
    chunk.template operator()<3>();
    split.fold(D);
  }

  template <class P, int MR, int NR, bool kStream>
  DP_QINLINE static void run(const Tile* tl, const QBlockArgs& qa, const QuantActLayout& L, int64_t m, int64_t nb,
                             Acc<P, MR, NR>& acc) {
    using I = typename P::I;
    using F = typename P::F;
    const Acts<MR> a(qa, L, m);
    alignas(64) uint8_t local[NR][kKScaleBytes];
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = b * kBytes;
      const uint8_t* dec[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        uint8_t* dst = tl[j].scales ? tl[j].scales + b * kKScaleBytes : local[j];
        if (!tl[j].scales_decoded) decode_k_scales<P::kLanes == 16>(tl[j].g + blk + 64, dst);
        dec[j] = dst;
      }
      I S[MR][NR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) S[i][j] = P::zero();
      for (int s = 0; s < 8; ++s) {
        stream_ahead<NR, kStream>(tl, blk + kBytes / 8 * s, kBytes / 8);
        I D[MR][NR];
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
          for (int j = 0; j < NR; ++j) D[i][j] = P::zero();
        if constexpr (kFive)
          five_bit_subblock<P, MR, NR>(tl, blk + 256 + kSub * s, a.q, 256 * b + 32 * s, D);
        else
          nibble_subblock<P, MR, NR>(tl, blk + 256 + kSub * s, a.q, 256 * b + 32 * s, D);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          const I scj = P::load_u8_i32(dec[j] + 16 * s + tl[j].off1);
#pragma GCC unroll 4
          for (int i = 0; i < MR; ++i) S[i][j] = P::add(S[i][j], P::mullo(D[i][j], scj));
        }
      }
      // The mins: N = sum_j mn_j * (sum of the activation codes of sub-block j), two j a step.
      F dd[NR], dm[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        dd[j] = P::load_f16(tl[j].g + blk + tl[j].off2);
        dm[j] = P::load_f16(tl[j].g + blk + 32 + tl[j].off2);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const F da = P::setf(a.d[i][b]);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          I N = P::zero();
#pragma GCC unroll 4
          for (int p = 0; p < 4; ++p)
            N = P::dot2(N, P::load(dec[j] + 128 + 64 * p + 4 * tl[j].off1), P::bcast32(a.s32h[i] + 8 * b + 2 * p));
          acc[i][j] = P::fma(P::cvt(S[i][j]), P::mul(dd[j], da), acc[i][j]);
          acc[i][j] = P::fma(P::cvt(N), P::neg(P::mul(dm[j], da)), acc[i][j]);
        }
      }
    }
  }
};

// Q6_K (3360 B per 16-row superblock): 16 f16 d, 16 x 16 int8 scales, then per 32 elements four
// nibble chunks and two vectors of high bit pairs. Sub-blocks are 16 elements (chunks 0-1, 2-3).
struct Q6_KK {
  static constexpr int64_t kElems = 256, kBytes = 3360;
  template <class P, int MR, int NR, bool kStream>
  DP_QINLINE static void run(const Tile* tl, const QBlockArgs& qa, const QuantActLayout& L, int64_t m, int64_t nb,
                             Acc<P, MR, NR>& acc) {
    using I = typename P::I;
    using F = typename P::F;
    const Acts<MR> a(qa, L, m);
    const I m4 = P::set1_8(0x0f), m30 = P::set1_8(0x30);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = b * kBytes;
      I S[MR][NR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) S[i][j] = P::zero();
      for (int u = 0; u < 8; ++u) {
        stream_ahead<NR, kStream>(tl, blk + kBytes / 8 * u, kBytes / 8);
        const int64_t ub = blk + 288 + 384 * u;
        const int64_t k0 = 256 * b + 32 * u;
        // Sub-block h (16 elements) of unit u: chunks 2h, 2h + 1 and high-bit vector h.
        auto sub = [&]<int H>() __attribute__((always_inline)) {
          // The codes are stored + 32: D starts at -32 x the sub-block's activation code sum, so
          // it ends as the dot with the codes themselves. Exact integers: the same S as taking
          // 32 x sum_h sc_h x (code sum of h) off it after the loop, without that second pass.
          I D[MR][NR];
#pragma GCC unroll 4
          for (int i = 0; i < MR; ++i) {
            const I neg_corr = P::set1(-32 * a.s16[i][16 * b + 2 * u + H]);
#pragma GCC unroll 4
            for (int j = 0; j < NR; ++j) D[i][j] = neg_corr;
          }
          auto chunk = [&]<int C>() __attribute__((always_inline)) {
            I lo[NR], hi[NR];
#pragma GCC unroll 4
            for (int j = 0; j < NR; ++j) {
              I raw = P::load(tl[j].g + ub + 64 * (2 * H + C) + tl[j].off4);
              I hb = P::load(tl[j].g + ub + 256 + 64 * H + tl[j].off4);
              asm("" : "+v"(raw), "+v"(hb));  // loaded once each (GCC folded them into every shift and mask)
              // k-group 4H + t has its high bits at 2t..2t+1 of hb: move them to bits 4-5.
              lo[j] = P::or_and(P::and_(raw, m4), P::template shift16<4 - 4 * C>(hb), m30);
              hi[j] = P::or_and(P::and_(P::srli16(raw, 4), m4), P::template shift16<2 - 4 * C>(hb), m30);
            }
#pragma GCC unroll 4
            for (int i = 0; i < MR; ++i) {
              const int64_t k = k0 + 16 * H + 8 * C;
              const I x0 = P::bcast32(a.q[i] + k), x1 = P::bcast32(a.q[i] + k + 4);
#pragma GCC unroll 4
              for (int j = 0; j < NR; ++j)
                D[i][j] = dot4_word<P, NR>(dot4_word<P, NR>(D[i][j], lo[j], x0, a.q[i] + k), hi[j], x1, a.q[i] + k + 4);
            }
          };
          chunk.template operator()<0>();
          chunk.template operator()<1>();
#pragma GCC unroll 4
          for (int j = 0; j < NR; ++j) {
            const I scj = P::load_i8_i32(tl[j].g + blk + 32 + 16 * (2 * u + H) + tl[j].off1);
#pragma GCC unroll 4
            for (int i = 0; i < MR; ++i) S[i][j] = P::add(S[i][j], P::mullo(D[i][j], scj));
          }
        };
        sub.template operator()<0>();
        sub.template operator()<1>();
      }
      F dd[NR];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) dd[j] = P::load_f16(tl[j].g + blk + tl[j].off2);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const F da = P::setf(a.d[i][b]);
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) acc[i][j] = P::fma(P::cvt(S[i][j]), P::mul(dd[j], da), acc[i][j]);
      }
    }
  }
};

// The block being computed: its first output row/column and where its outputs go.
struct Out {
  int64_t m0, n0, n1;
  float* y;
  int64_t ldy;
};

// One register tile: MR activation rows x NR lane tiles over the whole row, then the stores
// (only the lanes inside [n0, n1)).
template <class P, class K, int MR, int NR, bool kStream>
void tile(const Tile* tl, const QBlockArgs& a, const QuantActLayout& L, int64_t m, int64_t nb, const Out& o) {
  typename P::F acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = P::setf(0.0f);
  K::template run<P, MR, NR, kStream>(tl, a, L, m, nb, acc);
  for (int j = 0; j < NR; ++j) {
    const int64_t r0 = tl[j].row0;
    const int lo = int(std::max<int64_t>(o.n0 - r0, 0)), hi = int(std::min<int64_t>(o.n1 - r0, P::kLanes));
    if (hi <= lo) continue;
    // Lane l is output column r0 + l, stored at y[.. + (r0 + l - n0)]; lanes below n0 are masked.
    for (int i = 0; i < MR; ++i) P::store_masked(o.y + (m + i - o.m0) * o.ldy + (r0 - o.n0), acc[i][j], lo, hi);
  }
}

template <class P, class K, int MR, bool kStream>
void tile_nr(int nr, const Tile* tl, const QBlockArgs& a, const QuantActLayout& L, int64_t m, int64_t nb, const Out& o) {
  if (nr == 2) return tile<P, K, MR, 2, kStream>(tl, a, L, m, nb, o);
  return tile<P, K, MR, 1, kStream>(tl, a, L, m, nb, o);
}

// A GEMM's row tiles after its first (`first` false) read their weights from cache: they are
// compiled without the prefetch code (kStream false), not only skipping it at run time. With it,
// the Intel prefetch paths had made Q4_K GEMM 4-6 % slower on Zen 5, where they never run.
template <class P, class K, int MR>
void tile_mr(bool first, int nr, const Tile* tl, const QBlockArgs& a, const QuantActLayout& L, int64_t m, int64_t nb,
             const Out& o) {
  if constexpr (MR == P::kGemmMR)
    if (!first) return tile_nr<P, K, MR, false>(nr, tl, a, L, m, nb, o);
  tile_nr<P, K, MR, true>(nr, tl, a, L, m, nb, o);
}

// y[m0:m1, n0:n1]: lane tiles covering [n0, n1); each activation-row tile of up to
// kQuantGemvRows rows streams kGemvNR lane tiles once (GEMV), larger ones go kGemmMR rows x
// kGemmNR lane tiles at a time with the weights of the lane tiles reused from cache.
// A GEMV reads exactly one 16-row group at a time (kGemvNR x kLanes = 16), so each thread walks
// its rows as one sequential stream (four groups at once, each prefetched 2 KiB ahead, measured
// 1.2-1.6x slower on Zen 4). The hardware prefetchers alone do not keep ahead of the K types' stream, whose
// loads are spread over more instructions per byte: on Zen 5 the Q4_K / Q5_K GEMV stalled on
// every 64-byte chunk at 0.65 of the read bandwidth (Q8_0 0.9). Software prefetches a fixed
// distance ahead in each group's stream (quant_weight_prefetch(), kernels/qmatmul.h) bring them
// to 0.9 (bench/quant_kernels_bench.cpp A/Bs the distance). The GEMM loop's first row tile
// prefetches too: it streams the weights from memory as a GEMV does (batched decode: 1.2x at 8
// sequences); the later row tiles read them from cache and do not.
template <class P, class K>
void block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const WeightView& w = a.w;
  const int64_t gstride = 16 * dtype_row_bytes(w.dtype, w.ld);
  const int64_t nb = w.cols / K::kElems;
  const QuantActLayout L(K::kElems, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t T0 = n0 / P::kLanes, T1 = (n1 + P::kLanes - 1) / P::kLanes;
  const bool gemv = m1 - m0 <= kQuantGemvRows;
  static_assert(P::kGemvNR <= 2 && P::kGemmNR <= 2, "at most 2 lane tiles (tile_nr)");
  const int NRmax = gemv ? P::kGemvNR : P::kGemmNR;
  const int MRmax = gemv ? int(kQuantGemvRows) : P::kGemmMR;
  const Out o{m0, n0, n1, a.y, a.ldy};
  const int64_t ahead = quant_weight_prefetch();
  const bool l2 = quant_weight_prefetch_l2();
  const int64_t near = l2 ? quant_weight_prefetch_near() : 0;
  // Several row tiles pass the same lane tiles: the first decodes their K scales as it streams
  // them, the others read the decoded ones (Q4_K GEMM 1.1x; decoding them in a pass of their own
  // first made batched decode 7 % slower, a strided read of memory ahead of the stream).
  constexpr bool kKeepScales = std::is_same_v<K, QkK<false>> || std::is_same_v<K, QkK<true>>;
  const bool keep = kKeepScales && m1 - m0 > MRmax;
  thread_local AlignedBytes decoded;
  if (keep && decoded.size() < size_t(2 * nb * kKScaleBytes)) decoded = AlignedBytes(size_t(2 * nb * kKScaleBytes));
  for (int64_t T = T0; T < T1; T += NRmax) {
    const int nr = int(std::min<int64_t>(NRmax, T1 - T));
    Tile tl[2];
    for (int j = 0; j < nr; ++j) {
      const int64_t r0 = (T + j) * P::kLanes;
      const int in = int(r0 % 16);
      tl[j] = Tile{base + r0 / 16 * gstride, 4 * in, 2 * in, in, r0};
    }
    for (int64_t m = m0; m < m1; m += MRmax) {
      const int mr = int(std::min<int64_t>(MRmax, m1 - m));
      // Only the first row tile reads these groups from memory; the others find them in cache.
      for (int j = 0; j < nr; ++j) {
        tl[j].ahead = m == m0 ? ahead : 0;
        tl[j].l2 = l2;
        tl[j].near = m == m0 ? near : 0;
        if (keep) {
          tl[j].scales = decoded.data() + j * nb * kKScaleBytes;
          tl[j].scales_decoded = m != m0;
        }
      }
      const bool first = m == m0;
      switch (mr) {
        case 1: tile_mr<P, K, 1>(first, nr, tl, a, L, m, nb, o); break;
        case 2: tile_mr<P, K, 2>(first, nr, tl, a, L, m, nb, o); break;
        case 3: tile_mr<P, K, 3>(first, nr, tl, a, L, m, nb, o); break;
        default: tile_mr<P, K, 4>(first, nr, tl, a, L, m, nb, o); break;
      }
    }
  }
}

// The block for each repacked type.
template <class P>
void qmatmul_block(const QBlockArgs& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  switch (t.w.dtype) {
    case DType::Q8_0_X16: return block<P, Q8_0K>(t, m0, m1, n0, n1);
    case DType::Q4_0_X16: return block<P, Q4_0K>(t, m0, m1, n0, n1);
    case DType::Q4_K_X16: return block<P, QkK<false>>(t, m0, m1, n0, n1);
    case DType::Q5_K_X16: return block<P, QkK<true>>(t, m0, m1, n0, n1);
    case DType::Q6_K_X16: return block<P, Q6_KK>(t, m0, m1, n0, n1);
    default: return;
  }
}

#undef DP_QINLINE

}  // namespace dpserve::kernels::qtile
