// AMX int8 tiles for repacked quantized weights (Q8_0_X16, Q4_0_X16, Q4_K_X16): tdpbssd on 16 x 16
// int32 tiles, with exactly the bits of kernels/qmatmul.h (the scalar reference and VNNI's).
//
// A 32-element block of one 16-row group (a Q8_0 / Q4_0 block, a Q4_K sub-block) is one B tile: its
// 8 k-groups of 64 bytes (4 consecutive elements of each of the 16 rows, kernels/repack.h) are the 8
// rows of 16 x 4 bytes that tdpbssd takes for B. The group's codes are unpacked once per call into
// signed bytes with the type's offset taken off (Q8_0: stored + 128; Q4_0: nibble - 8; Q4_K: the
// nibble), 512 bytes per block, and every row tile of the call passes them. An A tile is 16
// activation rows x 32 int8 codes (kernels/quant_act.h), loaded with the row stride.
//
// One tile product is the block's exact integer dot for 16 rows x 16 columns. It is stored, and
// AVX-512 runs the steps of qmatmul.h on it in their order (Q4_K: the sub-block's 6-bit scale as an
// int32 multiply-add, then the superblock's fp32 steps), so every output has the reference's bits on
// every M. Batch invariance holds, and a block of too few rows for tiles runs the VNNI block instead
// with no change in the result.
#include "kernels/qmatmul_impl.h"  // before the target region: its std headers stay generic

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/cpu.h"

#if defined(__clang__)  // clang ignores GCC's target pragma (the sanitizer and fuzz builds use clang)
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
// rows costs as much as a full one, and at 16 rows tiles and VNNI tied on a Xeon (docs/kernels.md).
// A last row tile of fewer than kMinLastTileRows rows goes to VNNI too.
constexpr int64_t kMinTileRows = 24, kMinLastTileRows = 8;

// Tiles 0-3: C of four blocks in flight; 4, 5: A; 6, 7: B (blocks b, b + 2 share A and B registers).
// Tile registers are not renamed, and each block's product is stored, so a single product at a time
// would wait on load -> tdpbssd -> store: four independent ones keep the tile unit busy.
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
  RowTile(const uint8_t* x_, int64_t ldx_, int rows_, float* y_, int64_t ldy_, __mmask16 mask_)
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

// Q4_K: superblocks of 256 (2304 bytes per group), 8 sub-blocks of 32 with 6-bit scales and mins:
//   S = sum_j sc_j D_j,  N = sum_j m_j (code sum of sub-block j)
//   acc = fma(float(S), d * da_b, acc);  acc = fma(float(N), -(dmin * da_b), acc)
struct Q4_KA {
  static constexpr int64_t kElems = 256, kBytes = 2304;
  static void unpack(const uint8_t* g, int64_t nb, int8_t* panel, uint8_t* scales) {
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t b = 0; b < nb; ++b) {
      qtile::decode_k_scales(g + kBytes * b + 64, scales + qtile::kKScaleBytes * b);
      for (int s = 0; s < 8; ++s) unpack_nibbles(g + kBytes * b + 256 + 256 * s, panel + kTileBytes * (8 * b + s), zero);
    }
  }
  static void run(const uint8_t* g, const int8_t* panel, const uint8_t* scales, const RowTile& t,
                  const QuantActLayout& L, int64_t nb) {
    alignas(64) int32_t c[kBatch][kRows][kRows] = {};
    alignas(64) float acc[kRows][kRows] = {};
    const __m512i sign = _mm512_set1_epi32(int32_t(0x80000000u));
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* dec = scales + qtile::kKScaleBytes * b;
      __m512i S[kRows];
#pragma GCC unroll 16
      for (int i = 0; i < kRows; ++i) S[i] = _mm512_setzero_si512();
      for (int s = 0; s < 8; s += kBatch) {
        four_blocks(t.x, t.ldx, panel, 8 * b + s, &c[0][0][0]);
        for (int h = 0; h < kBatch; ++h) {
          const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(dec + 16 * (s + h))));
#pragma GCC unroll 16
          for (int i = 0; i < kRows; ++i)
            S[i] = _mm512_add_epi32(S[i], _mm512_mullo_epi32(_mm512_load_si512(c[h][i]), sc));
        }
      }
      const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kBytes * b)));
      const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kBytes * b + 32)));
#pragma GCC unroll 16
      for (int i = 0; i < kRows; ++i) {
        const __m512 da = _mm512_set1_ps(act_scale(t, L, i, b));
        const int16_t* s32h = reinterpret_cast<const int16_t*>(t.row[i] + L.s32h) + 8 * b;
        __m512i N = _mm512_setzero_si512();
        for (int p = 0; p < 4; ++p) {
          int32_t pair;
          std::memcpy(&pair, s32h + 2 * p, 4);
          N = _mm512_dpwssd_epi32(N, _mm512_loadu_si512(dec + 128 + 64 * p), _mm512_set1_epi32(pair));
        }
        __m512 a = _mm512_load_ps(acc[i]);
        a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[i]), _mm512_mul_ps(dd, da), a);
        const __m512 ndm = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_mul_ps(dm, da)), sign));
        _mm512_store_ps(acc[i], _mm512_fmadd_ps(_mm512_cvtepi32_ps(N), ndm, a));
      }
    }
    for (int i = 0; i < kRows; ++i) t.store(i, _mm512_load_ps(acc[i]));
  }
};

// y[m0:m1, n0:n1], a few groups at a time: their codes are unpacked into a panel (kept in L2), then
// each row tile of 16 activation rows passes every group of it, its A tiles read from L1 (a row
// tile's codes are K bytes a row) while the groups' B tiles stream from L2. The other order (a group
// at a time, every row tile passing it) read both from L2 and ran at 0.6x.
constexpr int64_t kPanelGroups = 8;

template <class K>
void block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const WeightView& w = a.w;
  const int64_t gstride = kRows * dtype_row_bytes(w.dtype, w.ld);
  const int64_t nb = w.cols / K::kElems;
  const QuantActLayout L(K::kElems, w.cols);
  const int64_t group_panel = w.cols / 32 * kTileBytes, group_scales = nb * qtile::kKScaleBytes;
  thread_local AlignedBytes panel, scales;
  if (panel.size() < size_t(kPanelGroups * group_panel)) panel = AlignedBytes(size_t(kPanelGroups * group_panel));
  if (scales.size() < size_t(kPanelGroups * group_scales)) scales = AlignedBytes(size_t(kPanelGroups * group_scales));
  int8_t* pb = reinterpret_cast<int8_t*>(panel.data());
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const uint8_t* act = static_cast<const uint8_t*>(a.act);
  const int64_t G1 = (n1 + kRows - 1) / kRows;
  const int64_t tail = (m1 - m0) % kRows, mt = tail < kMinLastTileRows ? m1 - tail : m1;
  for (int64_t G0 = n0 / kRows; G0 < G1; G0 += kPanelGroups) {
    const int64_t ng = std::min(kPanelGroups, G1 - G0);
    for (int64_t j = 0; j < ng; ++j)
      K::unpack(base + (G0 + j) * gstride, nb, pb + j * group_panel, scales.data() + j * group_scales);
    for (int64_t m = m0; m < mt; m += kRows) {
      const int rows = int(std::min<int64_t>(kRows, mt - m));
      configure(rows);
      for (int64_t j = 0; j < ng; ++j) {
        const int64_t r0 = (G0 + j) * kRows;
        const int lo = int(std::max<int64_t>(n0 - r0, 0)), hi = int(std::min<int64_t>(n1 - r0, kRows));
        const __mmask16 mask = __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1));
        // Lane l of the group is output column r0 + l, at y[.. + (r0 + l - n0)]; lanes below n0 are masked.
        const RowTile t(act + m * a.act_ld, a.act_ld, rows, a.y + (m - m0) * a.ldy + (r0 - n0), a.ldy, mask);
        K::run(base + (G0 + j) * gstride, pb + j * group_panel, scales.data() + j * group_scales, t, L, nb);
      }
    }
  }
  if (mt < m1) {
    QBlockArgs rest = a;
    rest.y = a.y + (mt - m0) * a.ldy;
    vnni::qmatmul_block(rest, mt, m1, n0, n1);
  }
}

#undef DP_AINLINE

}  // namespace

bool qmatmul_has_tiles(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q8_0_X16:
    case DType::Q4_0: case DType::Q4_0_X16:
    case DType::Q4_K: case DType::Q4_K_X16: return true;
    default: return false;
  }
}

void qmatmul_block(const QBlockArgs& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (m1 - m0 < kMinTileRows) return vnni::qmatmul_block(t, m0, m1, n0, n1);
  switch (t.w.dtype) {
    case DType::Q8_0_X16: return block<Q8_0A>(t, m0, m1, n0, n1);
    case DType::Q4_0_X16: return block<Q4_0A>(t, m0, m1, n0, n1);
    case DType::Q4_K_X16: return block<Q4_KA>(t, m0, m1, n0, n1);
    default: return vnni::qmatmul_block(t, m0, m1, n0, n1);
  }
}

}  // namespace dpserve::kernels::amx

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
