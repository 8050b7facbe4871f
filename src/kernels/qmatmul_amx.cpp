// AMX int8 tiles for repacked quantized weights (every *_X16 type): tdpbssd on 16 x 16 int32 tiles,
// with exactly the bits of kernels/qmatmul.h (the scalar reference and VNNI's). A group's codes are
// unpacked once per call into signed-byte B tiles (K/4 rows of 16 columns x 4 bytes: the *_X16
// k-groups, kernels/repack.h) in a panel of a few groups that stays in L2, and every row tile of
// the call passes them; the A tiles are the int8 activation rows (kernels/quant_act.h).
//
// Q8_0, Q4_0 (one fp32 step per 32-element block): one tile product per block is its exact integer
// dot for 16 rows x 16 columns, stored, and AVX-512 runs the block's fp32 step on it. That store and
// step per 32 elements bound these two (docs/kernels.md).
//
// Q4_K, Q5_K, Q6_K (one fp32 step per 256-element superblock): the integer sub-block scales are
// folded into the codes, w = sc q (Q6_K: sc (q - 32)), split into two signed bytes w = 64 h + l, so
// the superblock's S = sum_j sc_j D_j is 64 (h . a) + (l . a): tile products that accumulate over the
// whole superblock, one store each per 256 elements.
//
// The integers are the definition's and the fp32 steps are its steps in its order, so every output
// has the reference's bits on every M: batch invariance holds, and a block of too few rows for tiles
// runs the VNNI block instead with no change in the result.
#include "kernels/qmatmul_impl.h"  // before the target region: its std headers stay generic

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/cpu.h"

#if defined(__clang__)  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2")
#endif

#include "kernels/amx_tiles.h"
#include "kernels/qmatmul_tile.h"  // decode_k_scales, kKScaleBytes

namespace dpserve::kernels::amx {

namespace {

#define DP_AINLINE inline __attribute__((always_inline))

constexpr int kRows = 16;             // rows of a weight group = columns of a C tile
constexpr int64_t kTileBytes = 512;   // one B tile: 8 k-groups x 64 bytes
// Blocks of fewer activation rows than this run the VNNI block (the same bits): a tile of a few
// rows costs as much as a full one, and unpacking the groups is paid per call. Measured on a Xeon
// (docs/kernels.md): Q8_0 / Q4_0 tied with VNNI at 16 rows, the folded K types won from 16 (Q6_K
// 1.44x) and lost at 8. A last row tile of fewer than kMinLastTileRows rows goes to VNNI too.
constexpr int64_t kMinTileRows = 24, kMinFoldedTileRows = 16, kMinLastTileRows = 8;

// Q8_0 / Q4_0 tiles: 0-3 C of four blocks taken together, 4, 5 A, 6, 7 B (blocks b, b + 2 share the
// A and B registers). Each block's product is stored before its fp32 step.
void configure(int rows) {
  TileConfig c;
  for (int t = 0; t < 4; ++t) c.set(t, rows, 64);
  c.set(4, rows, 32);
  c.set(5, rows, 32);
  c.set(6, 8, 64);
  c.set(7, 8, 64);
  ensure_config(c);
}

constexpr int kBatch = 4;  // blocks per batch of tile products

// c[j] = A(block b + j) . B(block b + j) for j < kBatch, each stored as 16 x 16 int32.
DP_AINLINE void four_blocks(const uint8_t* x, int64_t ldx, const int8_t* panel, int64_t b, int32_t* c) {
  _tile_zero(0);
  _tile_loadd(4, x + 32 * b, ldx);
  _tile_loadd(6, panel + kTileBytes * b, 64);
  _tile_dpbssd(0, 4, 6);
  _tile_zero(1);
  _tile_loadd(5, x + 32 * (b + 1), ldx);
  _tile_loadd(7, panel + kTileBytes * (b + 1), 64);
  _tile_dpbssd(1, 5, 7);
  _tile_zero(2);
  _tile_loadd(4, x + 32 * (b + 2), ldx);
  _tile_loadd(6, panel + kTileBytes * (b + 2), 64);
  _tile_dpbssd(2, 4, 6);
  _tile_zero(3);
  _tile_loadd(5, x + 32 * (b + 3), ldx);
  _tile_loadd(7, panel + kTileBytes * (b + 3), 64);
  _tile_dpbssd(3, 5, 7);
  _tile_stored(0, c, 64);
  _tile_stored(1, c + kRows * kRows, 64);
  _tile_stored(2, c + 2 * kRows * kRows, 64);
  _tile_stored(3, c + 3 * kRows * kRows, 64);
}

DP_AINLINE void one_block(const uint8_t* x, int64_t ldx, const int8_t* panel, int64_t b, int32_t* c) {
  _tile_zero(0);
  _tile_loadd(4, x + 32 * b, ldx);
  _tile_loadd(6, panel + kTileBytes * b, 64);
  _tile_dpbssd(0, 4, 6);
  _tile_stored(0, c, 64);
}

// The low and high nibbles of a 64-byte chunk (k-groups 2c and 2c + 1) as signed bytes minus `off`.
DP_AINLINE void unpack_nibbles(const uint8_t* src, int8_t* dst, __m512i off) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int c = 0; c < 4; ++c) {
    const __m512i raw = _mm512_loadu_si512(src + 64 * c);
    _mm512_storeu_si512(dst + 128 * c, _mm512_sub_epi8(_mm512_and_si512(raw, m4), off));
    _mm512_storeu_si512(dst + 128 * c + 64, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(raw, 4), m4), off));
  }
}

// Where one row tile's outputs go: row i at y + i * ldy, lanes `mask` of the group.
struct RowTile {
  const uint8_t* x;   // the tile's first prepared activation row
  int64_t ldx;
  int rows;
  const uint8_t* row[kRows];  // each row's prepared bytes (rows past `rows` repeat the first)
  float* y;
  int64_t ldy;
  __mmask16 mask;
  RowTile(const uint8_t* x_, int64_t ldx_, int rows_, float* y_ = nullptr, int64_t ldy_ = 0, __mmask16 mask_ = 0)
      : x(x_), ldx(ldx_), rows(rows_), y(y_), ldy(ldy_), mask(mask_) {
    for (int i = 0; i < kRows; ++i) row[i] = x + (i < rows ? i : 0) * ldx;
  }
  void store(int i, __m512 v) const {
    if (i < rows) _mm512_mask_storeu_ps(y + i * ldy, mask, v);
  }
};

DP_AINLINE float act_scale(const RowTile& t, const QuantActLayout& L, int i, int64_t b) {
  float d;
  std::memcpy(&d, t.row[i] + L.d + 4 * b, 4);
  return d;
}

// Q8_0 and Q4_0: blocks of 32 with one f16 scale per row at the start of each kBytes-byte block;
//   acc = fma(float(D), d_b * da_b, acc) over the blocks in order.
template <int64_t kBytes>
struct Blocks32 {
  static constexpr int64_t kElems = 32;
  static void run(const uint8_t* g, const int8_t* panel, const uint8_t*, const RowTile& t, const QuantActLayout& L,
                  int64_t nb) {
    alignas(64) int32_t c[kBatch][kRows][kRows] = {};
    __m512 acc[kRows];
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) acc[i] = _mm512_setzero_ps();
    auto epilogue = [&](int64_t b, const int32_t (*cb)[kRows]) __attribute__((always_inline)) {
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + b * kBytes)));
#pragma GCC unroll 16
      for (int i = 0; i < kRows; ++i) {
        const __m512 D = _mm512_cvtepi32_ps(_mm512_load_si512(cb[i]));
        acc[i] = _mm512_fmadd_ps(D, _mm512_mul_ps(dw, _mm512_set1_ps(act_scale(t, L, i, b))), acc[i]);
      }
    };
    int64_t b = 0;
    for (; b + kBatch <= nb; b += kBatch) {
      four_blocks(t.x, t.ldx, panel, b, &c[0][0][0]);
      for (int j = 0; j < kBatch; ++j) epilogue(b + j, c[j]);
    }
    for (; b < nb; ++b) {
      one_block(t.x, t.ldx, panel, b, &c[0][0][0]);
      epilogue(b, c[0]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) t.store(i, acc[i]);
  }
};

struct Q8_0A : Blocks32<544> {
  // Stored + 128: flipping the top bit gives the signed code.
  static void unpack(const uint8_t* g, int64_t nb, int8_t* panel, uint8_t*) {
    const __m512i top = _mm512_set1_epi8(char(0x80));
    for (int64_t b = 0; b < nb; ++b)
      for (int k = 0; k < 8; ++k)
        _mm512_storeu_si512(panel + kTileBytes * b + 64 * k,
                            _mm512_xor_si512(_mm512_loadu_si512(g + 544 * b + 32 + 64 * k), top));
  }
};

struct Q4_0A : Blocks32<288> {
  static void unpack(const uint8_t* g, int64_t nb, int8_t* panel, uint8_t*) {
    const __m512i eight = _mm512_set1_epi8(8);
    for (int64_t b = 0; b < nb; ++b) unpack_nibbles(g + 288 * b + 32, panel + kTileBytes * b, eight);
  }
};

// ---- K types with the sub-block scales folded into the codes ----
//
// S = sum_j sc_j sum_{k in j} q_k a_k is one dot over the superblock of w_k = sc_j q_k. A folded code
// does not fit a byte (Q4_K: up to 63 x 15 = 945), so it is split as w = 32 h + l (h <= 29, l < 32):
// S = 32 (h . a) + (l . a), two tile products that run over the whole superblock in 64-element
// steps, accumulating in the tiles, with one store each per superblock instead of one per
// sub-block. The integers are the definition's, so the superblock's fp32 steps give its bits.

// Bytes of a group's folded panel per superblock: 4 steps of 64 elements x (h, l) x one 1 KiB B
// tile (16 k-groups of 4 elements x 16 rows).
constexpr int64_t kFoldedSuperblockBytes = 4 * 2 * 1024;

// The folded h and l bytes of 64 codes (one k-group of 16 rows, u8 < 32) with their rows' 6-bit
// scales (byte 4r + i of `sc` = the scale of row r): w = q sc < 2048 as 16-bit words, even and odd
// bytes apart, split as w = 64 h + l.
DP_AINLINE void fold_kgroup(__m512i q, __m512i sc, int8_t* h_dst, int8_t* l_dst) {
  const __m512i even = _mm512_set1_epi16(0x00ff), odd = _mm512_set1_epi16(int16_t(0xff00));
  const __m512i we = _mm512_maddubs_epi16(q, _mm512_and_si512(sc, even));
  const __m512i wo = _mm512_maddubs_epi16(q, _mm512_and_si512(sc, odd));
  const __m512i m6 = _mm512_set1_epi16(0x003f);
  // l: the low six bits of each product in its own byte; h: the rest (< 32) likewise.
  const __m512i l = _mm512_or_si512(_mm512_and_si512(we, m6), _mm512_slli_epi16(_mm512_and_si512(wo, m6), 8));
  const __m512i h = _mm512_or_si512(_mm512_srli_epi16(we, 6), _mm512_and_si512(_mm512_slli_epi16(wo, 2), odd));
  _mm512_storeu_si512(h_dst, h);
  _mm512_storeu_si512(l_dst, l);
}

// Byte 4r + i of a 64-byte vector belongs to row r: the shuffle that spreads 16 per-row bytes
// (broadcast to each 128-bit lane) over it.
alignas(64) constexpr uint8_t kRowBytes[64] = {0,  0,  0,  0,  1,  1,  1,  1,  2,  2,  2,  2,  3,  3,  3,  3,
                                               4,  4,  4,  4,  5,  5,  5,  5,  6,  6,  6,  6,  7,  7,  7,  7,
                                               8,  8,  8,  8,  9,  9,  9,  9,  10, 10, 10, 10, 11, 11, 11, 11,
                                               12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15};
DP_AINLINE __m512i row_bytes(const void* p16) {
  return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128(static_cast<const __m128i*>(p16))),
                             _mm512_load_si512(kRowBytes));
}

// Q4_K / Q5_K folded: the panel holds h and l tiles per 64-element step; the mins term N and the
// fp32 steps are the VNNI kernel's (decoded scales and mins, kernels/qmatmul_tile.h).
template <bool kFive>
struct QkKF {
  static constexpr int64_t kElems = 256, kBytes = kFive ? 2816 : 2304, kSub = kFive ? 320 : 256;
  static constexpr bool kBySuperblock = true;  // block_folded
  static void unpack(const uint8_t* g, int64_t nb, int8_t* panel, uint8_t* scales) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m10 = _mm512_set1_epi8(0x10);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dec = scales + qtile::kKScaleBytes * b;
      qtile::decode_k_scales(g + kBytes * b + 64, dec);
      int8_t* sb = panel + kFoldedSuperblockBytes * b;
      for (int s = 0; s < 8; ++s) {
        const __m512i sc = row_bytes(dec + 16 * s);
        const uint8_t* sub = g + kBytes * b + 256 + kSub * s;
        // Sub-block s is elements 32 s.. of the superblock: step s / 2, k-groups 8 (s % 2).. of its tiles.
        int8_t* h = sb + (s / 2) * 2048 + 64 * 8 * (s % 2);
        int8_t* l = h + 1024;
        const __m512i hb = kFive ? _mm512_loadu_si512(sub) : _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
          const __m512i raw = _mm512_loadu_si512(sub + (kFive ? 64 : 0) + 64 * c);
          __m512i q0 = _mm512_and_si512(raw, m4), q1 = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
          if (kFive) {
            // Bit g of hb is the fifth bit of k-group g (2c and 2c + 1 here): moved to bit 4.
            const int s0 = 4 - 2 * c, s1 = 3 - 2 * c;
            const __m512i b0 = s0 >= 0 ? _mm512_sll_epi16(hb, _mm_cvtsi32_si128(s0)) : _mm512_srl_epi16(hb, _mm_cvtsi32_si128(-s0));
            const __m512i b1 = s1 >= 0 ? _mm512_sll_epi16(hb, _mm_cvtsi32_si128(s1)) : _mm512_srl_epi16(hb, _mm_cvtsi32_si128(-s1));
            q0 = _mm512_ternarylogic_epi32(q0, b0, m10, 0xf8);
            q1 = _mm512_ternarylogic_epi32(q1, b1, m10, 0xf8);
          }
          fold_kgroup(q0, sc, h + 64 * (2 * c), l + 64 * (2 * c));
          fold_kgroup(q1, sc, h + 64 * (2 * c + 1), l + 64 * (2 * c + 1));
        }
      }
    }
  }
  // The fp32 steps of a superblock for one row tile: S = (h << 6) + l, N from the decoded mins.
  static void steps(const int32_t* ch, const int32_t* cl, const uint8_t* g, const uint8_t* dec, const RowTile& t,
                    const QuantActLayout& L, int64_t b, float* accm) {
    const __m512i sign = _mm512_set1_epi32(int32_t(0x80000000u));
    const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kBytes * b)));
    const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kBytes * b + 32)));
    const __m512i mins[4] = {_mm512_loadu_si512(dec + 128), _mm512_loadu_si512(dec + 192),
                             _mm512_loadu_si512(dec + 256), _mm512_loadu_si512(dec + 320)};
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      const __m512i S = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(ch + 16 * i), 6),
                                         _mm512_load_si512(cl + 16 * i));
      const __m512 da = _mm512_set1_ps(act_scale(t, L, i, b));
      const int16_t* s32h = reinterpret_cast<const int16_t*>(t.row[i] + L.s32h) + 8 * b;
      __m512i N = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) {
        int32_t pair;
        std::memcpy(&pair, s32h + 2 * p, 4);
        N = _mm512_dpwssd_epi32(N, mins[p], _mm512_set1_epi32(pair));
      }
      __m512 v = _mm512_load_ps(accm + 16 * i);
      v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(dd, da), v);
      const __m512 ndm = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_mul_ps(dm, da)), sign));
      _mm512_store_ps(accm + 16 * i, _mm512_fmadd_ps(_mm512_cvtepi32_ps(N), ndm, v));
    }
  }
};

// Folded tiles (configure_two_row_tiles): 0-3 C (h and l of row tiles 0 and 1), 4, 5 A of the row
// tiles, 6, 7 B (h, l).

// One superblock b of one group for one or two row tiles: C tiles h/l over its 4 steps, stored to c
// (c[tile][16][16]: h0, l0, h1, l1).
template <bool Two>
DP_AINLINE void folded_superblock(const uint8_t* x0, const uint8_t* x1, int64_t ldx, const int8_t* sb, int64_t b,
                                  int32_t* c) {
  _tile_zero(0);
  _tile_zero(1);
  if (Two) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int t = 0; t < 4; ++t) {
    _tile_loadd(6, sb + 2048 * t, 64);
    _tile_loadd(7, sb + 2048 * t + 1024, 64);
    _tile_loadd(4, x0 + 256 * b + 64 * t, ldx);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    if (Two) {
      _tile_loadd(5, x1 + 256 * b + 64 * t, ldx);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    }
  }
  _tile_stored(0, c, 64);
  _tile_stored(1, c + 256, 64);
  if (Two) {
    _tile_stored(2, c + 512, 64);
    _tile_stored(3, c + 768, 64);
  }
}

// Q6_K folded: w = sc (q - 32) with the int8 scale of each 16-element sub-block, |w| <= 4096, split
// as w = 64 h + l (h = w >> 6 in [-64, 64], l in [0, 63]); then acc = fma(float(S), d * da, acc).
struct Q6_KF {
  static constexpr int64_t kElems = 256, kBytes = 3360;
  static constexpr bool kBySuperblock = false;  // a group over all of K (block_folded)
  static void unpack(const uint8_t* g, int64_t nb, int8_t* panel, uint8_t*) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i even = _mm512_set1_epi16(0x00ff), odd = _mm512_set1_epi16(int16_t(0xff00)), m6 = _mm512_set1_epi16(63);
    auto fold = [&](__m512i q, __m512i sc, int8_t* h_dst, int8_t* l_dst) __attribute__((always_inline)) {
      // The scales of even and odd bytes as int16, and q sc - 32 sc per byte, in 16-bit words.
      const __m512i sce = _mm512_srai_epi16(_mm512_slli_epi16(sc, 8), 8), sco = _mm512_srai_epi16(sc, 8);
      const __m512i we = _mm512_sub_epi16(_mm512_maddubs_epi16(q, _mm512_and_si512(sc, even)), _mm512_slli_epi16(sce, 5));
      const __m512i wo = _mm512_sub_epi16(_mm512_maddubs_epi16(q, _mm512_and_si512(sc, odd)), _mm512_slli_epi16(sco, 5));
      const __m512i l = _mm512_or_si512(_mm512_and_si512(we, m6), _mm512_slli_epi16(_mm512_and_si512(wo, m6), 8));
      const __m512i h = _mm512_or_si512(_mm512_and_si512(_mm512_srai_epi16(we, 6), even),
                                        _mm512_slli_epi16(_mm512_srai_epi16(wo, 6), 8));
      _mm512_storeu_si512(h_dst, h);
      _mm512_storeu_si512(l_dst, l);
    };
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = g + kBytes * b;
      int8_t* sb = panel + kFoldedSuperblockBytes * b;
      for (int u = 0; u < 8; ++u) {
        const uint8_t* ub = blk + 288 + 384 * u;
        // Unit u is elements 32 u.. of the superblock: step u / 2, k-groups 8 (u % 2).. of its tiles.
        int8_t* h = sb + (u / 2) * 2048 + 64 * 8 * (u % 2);
        int8_t* l = h + 1024;
        for (int H = 0; H < 2; ++H) {
          const __m512i sc = row_bytes(blk + 32 + 16 * (2 * u + H));
          const __m512i hb = _mm512_loadu_si512(ub + 256 + 64 * H);
          for (int C = 0; C < 2; ++C) {
            const __m512i raw = _mm512_loadu_si512(ub + 64 * (2 * H + C));
            // k-group 4H + 2C + e has its high bits at 2 (2C + e) of hb: moved to bits 4-5.
            const __m512i hb_lo = C == 0 ? _mm512_slli_epi16(hb, 4) : hb;
            const __m512i hb_hi = C == 0 ? _mm512_slli_epi16(hb, 2) : _mm512_srli_epi16(hb, 2);
            const __m512i q0 = _mm512_ternarylogic_epi32(_mm512_and_si512(raw, m4), hb_lo, m30, 0xf8);
            const __m512i q1 = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(raw, 4), m4), hb_hi, m30, 0xf8);
            const int kg = 4 * H + 2 * C;
            fold(q0, sc, h + 64 * kg, l + 64 * kg);
            fold(q1, sc, h + 64 * (kg + 1), l + 64 * (kg + 1));
          }
        }
      }
    }
  }
  static void steps(const int32_t* ch, const int32_t* cl, const uint8_t* g, const uint8_t*, const RowTile& t,
                    const QuantActLayout& L, int64_t b, float* accm) {
    const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kBytes * b)));
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      const __m512i S = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(ch + 16 * i), 6), _mm512_load_si512(cl + 16 * i));
      const __m512 da = _mm512_set1_ps(act_scale(t, L, i, b));
      _mm512_store_ps(accm + 16 * i, _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_mul_ps(dd, da), _mm512_load_ps(accm + 16 * i)));
    }
  }
};

// The frame of both schemes: the groups of [n0, n1) a panel at a time (up to max_groups, each
// unpacked by K::unpack into the thread's panel, `group_codes` bytes a group: it stays in L2), then
// rows(m, panel) for the row tiles from m0 in steps of row_step; a last row tile of fewer than
// kMinLastTileRows rows runs the VNNI block.
struct Panel {
  int64_t G0, ng;         // its groups [G0, G0 + ng)
  const int8_t* codes;    // group j's unpacked codes at codes + j * group_codes
  const uint8_t* scales;  // its decoded K scales at scales + j * group_scales
};

// The calling thread's panel buffers, grown to at least these sizes: one pair per thread, whichever
// types it multiplies (not one per instantiation of over_panels).
void thread_panel(size_t code_bytes, size_t scale_bytes, int8_t*& codes, uint8_t*& scales) {
  thread_local AlignedBytes c, s;
  if (c.size() < code_bytes) c = AlignedBytes(code_bytes);
  if (s.size() < scale_bytes) s = AlignedBytes(scale_bytes);
  codes = reinterpret_cast<int8_t*>(c.data());
  scales = s.data();
}

template <class K, class Rows>
void over_panels(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t group_codes,
                 int64_t max_groups, int64_t row_step, Rows&& rows) {
  const WeightView& w = a.w;
  const int64_t gstride = kRows * dtype_row_bytes(w.dtype, w.ld), nb = w.cols / K::kElems;
  const int64_t group_scales = K::kElems == 256 ? nb * qtile::kKScaleBytes : 0;  // decoded K-type scales
  int8_t* cb;
  uint8_t* sb;
  thread_panel(size_t(max_groups * group_codes), size_t(max_groups * group_scales), cb, sb);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t G1 = (n1 + kRows - 1) / kRows;
  const int64_t tail = (m1 - m0) % kRows, mt = tail < kMinLastTileRows ? m1 - tail : m1;
  for (int64_t G0 = n0 / kRows; G0 < G1; G0 += max_groups) {
    const int64_t ng = std::min(max_groups, G1 - G0);
    for (int64_t j = 0; j < ng; ++j)
      K::unpack(base + (G0 + j) * gstride, nb, cb + j * group_codes, sb + j * group_scales);
    for (int64_t m = m0; m < mt; m += row_step) rows(m, mt, Panel{G0, ng, cb, sb});
  }
  if (mt < m1) {
    QBlockArgs rest = a;
    rest.y = a.y + (mt - m0) * a.ldy;
    vnni::qmatmul_block(rest, mt, m1, n0, n1);
  }
}

// The lanes of group G inside [n0, n1), and where its lane 0 of activation row m goes (lanes below
// n0 are masked, never written).
DP_AINLINE __mmask16 group_lanes(int64_t G, int64_t n0, int64_t n1) {
  const int lo = int(std::max<int64_t>(n0 - G * kRows, 0)), hi = int(std::min<int64_t>(n1 - G * kRows, kRows));
  return __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1));
}
DP_AINLINE float* group_out(const QBlockArgs& a, int64_t m0, int64_t n0, int64_t m, int64_t G) {
  return a.y + (m - m0) * a.ldy + (G * kRows - n0);
}

// y[m0:m1, n0:n1] for a K type with folded codes (QkKF, Q6_KF): two row tiles (32 activation rows)
// pass each group of the panel, every B tile serving both. With K::kBySuperblock (Q4_K / Q5_K) they
// take the panel a superblock at a time (all the groups, then the next superblock): the row tiles' A tiles
// of a superblock (8 KiB) are read from L1 by every group and only the B tiles stream from L2 (group
// by group over all of K, A came from L2 too and these ran 1.05-1.16x slower at 128-512 rows). Q6_K,
// whose fp32 step is lighter, measured no faster that way and keeps a group over all of K. Each
// group's fp32 accumulators wait in a buffer between its superblocks, which keeps every output's
// superblocks in order: the same bits either way.
template <class K>
void block_folded(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const WeightView& w = a.w;
  const int64_t gstride = kRows * dtype_row_bytes(w.dtype, w.ld), nb = w.cols / 256;
  const QuantActLayout L(256, w.cols);
  const int64_t group_codes = nb * kFoldedSuperblockBytes, group_scales = nb * qtile::kKScaleBytes;
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const uint8_t* act = static_cast<const uint8_t*>(a.act);
  constexpr int64_t kMaxGroups = 8;
  alignas(64) int32_t c[4][kRows][kRows] = {};
  alignas(64) float accm[kMaxGroups][2][kRows][kRows];
  // Up to 8 groups, within ~640 KiB of panel (L2 also holds the activation rows).
  const int64_t max_groups = std::clamp<int64_t>((640 << 10) / group_codes, 1, kMaxGroups);
  over_panels<K>(a, m0, m1, n0, n1, group_codes, max_groups, 2 * kRows, [&](int64_t m, int64_t mt, const Panel& p) {
    const int r0 = int(std::min<int64_t>(kRows, mt - m)), r1 = int(std::clamp<int64_t>(mt - m - kRows, 0, kRows));
    configure_two_row_tiles(r0, r1);
    const RowTile t0(act + m * a.act_ld, a.act_ld, r0);
    const RowTile t1(act + (m + kRows) * a.act_ld, a.act_ld, std::max(r1, 1));
    // Superblock b of group j into that group's accumulators, and a group's outputs into y.
    auto superblock = [&](int64_t j, int64_t b, float (*acc)[kRows][kRows]) __attribute__((always_inline)) {
      const uint8_t* g = base + (p.G0 + j) * gstride;
      const int8_t* sb = p.codes + j * group_codes + kFoldedSuperblockBytes * b;
      const uint8_t* dec = p.scales + j * group_scales + qtile::kKScaleBytes * b;
      if (r1 > 0) folded_superblock<true>(t0.x, t1.x, a.act_ld, sb, b, &c[0][0][0]);
      else folded_superblock<false>(t0.x, t0.x, a.act_ld, sb, b, &c[0][0][0]);
      K::steps(&c[0][0][0], &c[1][0][0], g, dec, t0, L, b, &acc[0][0][0]);
      if (r1 > 0) K::steps(&c[2][0][0], &c[3][0][0], g, dec, t1, L, b, &acc[1][0][0]);
    };
    auto store = [&](int64_t j, const float (*acc)[kRows][kRows]) {
      const __mmask16 mask = group_lanes(p.G0 + j, n0, n1);
      float* y = group_out(a, m0, n0, m, p.G0 + j);
      for (int i = 0; i < r0; ++i) _mm512_mask_storeu_ps(y + i * a.ldy, mask, _mm512_load_ps(acc[0][i]));
      for (int i = 0; i < r1; ++i) _mm512_mask_storeu_ps(y + (kRows + i) * a.ldy, mask, _mm512_load_ps(acc[1][i]));
    };
    if constexpr (K::kBySuperblock) {
      std::memset(accm, 0, sizeof(accm[0]) * size_t(p.ng));
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t j = 0; j < p.ng; ++j) superblock(j, b, accm[j]);
      for (int64_t j = 0; j < p.ng; ++j) store(j, accm[j]);
    } else {
      for (int64_t j = 0; j < p.ng; ++j) {
        std::memset(accm[0], 0, sizeof(accm[0]));
        for (int64_t b = 0; b < nb; ++b) superblock(j, b, accm[0]);
        store(j, accm[0]);
      }
    }
  });
}

// y[m0:m1, n0:n1] for Q8_0 / Q4_0: each row tile of 16 activation rows passes every group of the
// panel, its A tiles read from L1 (a row tile's codes are K bytes a row) while the groups' B tiles
// stream from L2. The other order (a group at a time, every row tile passing it) read both from L2
// and ran at 0.6x.
constexpr int64_t kPanelGroups = 8;

template <class K>
void block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const WeightView& w = a.w;
  const int64_t gstride = kRows * dtype_row_bytes(w.dtype, w.ld), nb = w.cols / K::kElems;
  const QuantActLayout L(K::kElems, w.cols);
  const int64_t group_codes = w.cols / 32 * kTileBytes;
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const uint8_t* act = static_cast<const uint8_t*>(a.act);
  over_panels<K>(a, m0, m1, n0, n1, group_codes, kPanelGroups, kRows, [&](int64_t m, int64_t mt, const Panel& p) {
    const int rows = int(std::min<int64_t>(kRows, mt - m));
    configure(rows);
    for (int64_t j = 0; j < p.ng; ++j) {
      const RowTile t(act + m * a.act_ld, a.act_ld, rows, group_out(a, m0, n0, m, p.G0 + j), a.ldy,
                      group_lanes(p.G0 + j, n0, n1));
      K::run(base + (p.G0 + j) * gstride, p.codes + j * group_codes, nullptr, t, L, nb);
    }
  });
}

#undef DP_AINLINE

}  // namespace

bool qmatmul_has_tiles(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q8_0_X16:
    case DType::Q4_0: case DType::Q4_0_X16:
    case DType::Q4_K: case DType::Q4_K_X16:
    case DType::Q5_K: case DType::Q5_K_X16:
    case DType::Q6_K: case DType::Q6_K_X16: return true;
    default: return false;
  }
}

void qmatmul_block(const QBlockArgs& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const bool folded = t.w.dtype == DType::Q4_K_X16 || t.w.dtype == DType::Q5_K_X16 || t.w.dtype == DType::Q6_K_X16;
  if (m1 - m0 < (folded ? kMinFoldedTileRows : kMinTileRows)) return vnni::qmatmul_block(t, m0, m1, n0, n1);
  switch (t.w.dtype) {
    case DType::Q8_0_X16: return block<Q8_0A>(t, m0, m1, n0, n1);
    case DType::Q4_0_X16: return block<Q4_0A>(t, m0, m1, n0, n1);
    case DType::Q4_K_X16: return block_folded<QkKF<false>>(t, m0, m1, n0, n1);
    case DType::Q5_K_X16: return block_folded<QkKF<true>>(t, m0, m1, n0, n1);
    case DType::Q6_K_X16: return block_folded<Q6_KF>(t, m0, m1, n0, n1);
    default: return vnni::qmatmul_block(t, m0, m1, n0, n1);
  }
}

}  // namespace dpserve::kernels::amx

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
