// AMX attention over a bf16, int8 or fp8 KV cache: the products of the online softmax on
// tdpbf16ps tiles. The rows of a job that take the same step (attention_impl.h, RowStep) are
// flattened with their heads into the tiles' rows, (row, head) after (row, head), 16 to a tile:
// a step's scores are those rows times the step's keys packed as B tiles (16 keys a tile, the
// same pairs-by-keys rows the AVX-512 BF16 kernel multiplies), and its weighted values the
// rounded weights times the values packed in pairs of keys (B tiles of 16 value columns). A step
// of at most 32 (row, head)s (decode, a few verify rows) scores the other way round, the cached
// keys as A tiles and the (row, head)s as B's columns (scores_by_keys), with no key transpose. The
// softmax between them (max, exponentials, sums, rescale) is the AVX-512 code of every other level.
//
// Bits: a score is one tile lane taking the pairs of the head dimension in order from zero (a
// tile product sums a 32-element chunk's products before it rounds onto C, so each chunk must be
// one product in either orientation, as it is);
// a weighted sum one row-lane taking the step's key pairs in order, anchored at the window's first
// key, onto the rescaled running sum. Keys a row does not see are in a step's tiles only as zero
// weights (or as scores it never reads), which add +0 to its sums, so a row gets the same bits in
// a job of 16 rows, of one, or in a chunk job, and every row on this level, decode included, runs
// these tiles. (A non-finite cached value that a row does not see would turn its zero weight into
// a NaN: the cache holds finite values.) The products round inside a pair as tiles do, so this
// level's bits are not Avx512Bf16's; the queries and weights are rounded to bf16 as there. An fp32
// cache takes the AVX-512 path.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_exp.h"
#include "kernels/vec_math.h"

// GCC takes the target region as a pragma; clang (the sanitizer trees) ignores it and needs the
// attribute on every function of the region.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")
#endif
// GCC 12's unpack / shuffle / extract intrinsics pass _mm512_undefined_*() as the unused merge
// source, which -Wuninitialized reports once they are inlined here: nothing is read from it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "kernels/amx_tiles.h"
#include "kernels/attention_impl.h"

namespace dpserve::kernels::amx {

namespace {

#include "kernels/attention_avx512_ops.h"

#include "kernels/attention_bf16_pairs.h"

#include "kernels/attention_bf16_window.h"

constexpr int64_t kTileRows = 16;

// All eight tiles 16 rows of 64 bytes (which are C, A and B differs by loop): the buffers behind
// them are padded to whole tiles, so one configuration serves every shape and no reload is needed.
void configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.set(t, kTileRows, 64);
  ensure_config(cfg);
}

// What a job keeps between its steps: its rows' queries as bf16 pairs (converted at a row's first
// step) and their running weighted sums in the tiles' layout (written to a row's partial at the end
// of each of its key chunks, when the driver reads them), and the work space of a step.
struct JobState {
  int64_t rows = 0, G = 0, pp = 0, cols = 0;  // pp: pairs of a query, padded to whole tiles
  std::vector<uint32_t> q;                    // [rows * G + kTileRows][pp]
  std::vector<float> acc;                     // [rows * G + kTileRows][cols]
  std::vector<uint8_t> converted;             // per row
  std::vector<uint32_t> kp;                   // the step's keys: 4 blocks of [pp][16]
  std::vector<uint32_t> qt;                   // up to 32 (row, head)s' query pairs as B tiles: [groups][pp / 16][16][16]
  int64_t qt_m0 = -1, qt_m = 0;               // the (row, head)s qt holds, [qt_m0, qt_m0 + qt_m) (-1: none yet)
  std::vector<uint32_t> st;                   // their scores key by key: [groups][L][16]
  std::vector<uint32_t> vp;                   // the step's values in pairs of keys: [L / 2][cols]
  std::vector<float> sc;                      // scores: [(rows * G) padded][L]
  std::vector<uint16_t> wb;                   // weights in bf16: [(rows * G) padded][L]
};
thread_local JobState job_state;

// The scores of M <= kKeysCols (row, head)s from the job's m0-th (consecutive rows' heads, pp query
// pairs each from qa) over blocks [0, nblk) of the window (16 keys each) with the keys as the A tiles
// and the (row, head)s as B's columns (S^T = K Q^T), 16 to a column group, to sc ((row, head) m's L
// columns at sc + m L): no transpose of the keys, which the rows-by-heads products below need for
// every step (a third of a decode step went into it). Each score is the same chain as there, the
// pairs of the head dimension in order from zero: a tile product's terms are the same products in
// either operand order. bf16 blocks of 16 evenly spaced rows are read in place (whole 32-element
// chunks); other blocks (int8 / fp8, a partial block, an odd width) are copied into A rows as bf16
// first. A second column group loads the same A tiles again (4 blocks of 16 keys: from L1 or L2).
constexpr int64_t kKeysCols = 32;

template <class T>
void scores_by_keys(const WindowCols<T>& w, int64_t nblk, int64_t hd, int64_t pp, int64_t M, const uint32_t* qa,
                    int64_t m0, float* sc) {
  JobState& J = job_state;
  const int64_t nc = pp / 16;                 // 32-element chunks of the head dimension
  const int64_t ng = (M + 15) / 16;           // column groups of 16 (row, head)s
  uint32_t* const qt = aligned64(J.qt, ng * nc * 256);
  if (J.qt_m0 != m0 || J.qt_m != M) {  // as B columns: once per job for a decode row
    std::memset(qt, 0, size_t(ng * nc * 256) * 4);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t p = 0; p < pp; ++p) qt[((m / 16) * nc + p / 16) * 256 + (p % 16) * 16 + m % 16] = qa[m * pp + p];
    J.qt_m0 = m0, J.qt_m = M;
  }
  // Where each block's A rows are: a pointer to chunk 0 and the row stride in bytes; the rows
  // copied go to the keys' buffer of the other products ([4][16][2 pp] bf16).
  const void* ka[4];
  int64_t kstride[4];
  uint16_t* const ks = reinterpret_cast<uint16_t*>(aligned64(J.kp, 4 * 16 * pp));
  auto drip = w.keys_ahead();
  for (int64_t b = 0; b < nblk; ++b) {
    const T* const* rows = w.k.data() + b * 16;
    bool direct = std::is_same_v<T, bf16_t> && hd == 2 * pp && rows[0] && rows[1];
    const int64_t ld = direct ? rows[1] - rows[0] : 0;
    for (int j = 2; direct && j < 16; ++j) direct = rows[j] == rows[0] + j * ld;
    if (direct) {
      ka[b] = rows[0];
      kstride[b] = ld * int64_t(sizeof(T));
      continue;
    }
    uint16_t* kb = ks + b * 16 * 2 * pp;
    for (int j = 0; j < 16; ++j)
      for (int64_t c = 0; c < nc; ++c) {
        drip.next();
        const __m512i x = rows[j] ? load32_bf16(rows[j] + 32 * c, std::min<int64_t>(32, hd - 32 * c))
                                  : _mm512_setzero_si512();
        _mm512_store_si512(kb + j * 2 * pp + 32 * c, x);
      }
    ka[b] = kb;
    kstride[b] = 2 * pp * 2;
  }
  configure();
  const auto at = [&](int64_t b, int64_t c) {
    for (int i = 0; i < 16; ++i) drip.next();  // a line of the next step's keys for each row the tile loads
    return static_cast<const char*>(ka[b]) + c * 64;
  };
  float* const st = reinterpret_cast<float*>(aligned64(J.st, ng * L * 16));  // [ng][L][16]
  for (int64_t g = 0; g < ng; ++g) {
    const uint32_t* qg = qt + g * nc * 256;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t c = 0; c < nc; ++c) {
      _tile_loadd(4, qg + c * 256, 64);
      _tile_loadd(5, at(0, c), kstride[0]);
      _tile_dpbf16ps(0, 5, 4);
      if (nblk > 1) {
        _tile_loadd(6, at(1, c), kstride[1]);
        _tile_dpbf16ps(1, 6, 4);
      }
      if (nblk > 2) {
        _tile_loadd(7, at(2, c), kstride[2]);
        _tile_dpbf16ps(2, 7, 4);
      }
      if (nblk > 3) {
        _tile_loadd(5, at(3, c), kstride[3]);
        _tile_dpbf16ps(3, 5, 4);
      }
    }
    float* const sg = st + g * L * 16;
    _tile_stored(0, sg, 64);
    if (nblk > 1) _tile_stored(1, sg + 256, 64);
    if (nblk > 2) _tile_stored(2, sg + 512, 64);
    if (nblk > 3) _tile_stored(3, sg + 768, 64);
  }
  // Key by key (16 lanes of (row, head)s) to (row, head) by (row, head): lane m % 16 of rows
  // 16 b .. 16 b + 15 of group m / 16. (A 16 x 16 register transpose of each C tile measured no
  // faster than these gathers.)
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(16));
  for (int64_t m = 0; m < M; ++m) {
    const float* sm = st + (m / 16) * L * 16 + m % 16;
    for (int64_t b = 0; b < nblk; ++b) _mm512_storeu_ps(sc + m * L + 16 * b, _mm512_i32gather_ps(idx, sm + b * 256, 4));
  }
}

// The scores of Mp / 16 row tiles ((row, head) after (row, head), pp query pairs each from qa) over
// blocks [0, nblk) of the window, four C tiles per row tile, the keys packed as B tiles (blocks
// past nblk zero), to sc (row-head m's L columns at sc + m L).
template <class T>
void scores_by_rows(const WindowCols<T>& cw, int64_t nblk, int64_t hd, int64_t pp, int64_t Mp, const uint32_t* qa,
                    float* sc) {
  JobState& J = job_state;
  uint32_t* const kpack = aligned64(J.kp, 4 * pp * 16);
  pack_window_keys<T>(cw, nblk, hd, pp, kpack);
  for (int64_t b = nblk; b < 4; ++b) std::memset(kpack + b * pp * 16, 0, size_t(pp * 16) * 4);
  configure();
  if (pp <= 32) {
    // A head dimension of up to 64: two blocks' B tiles (both k-steps) stay in tile registers
    // while every row tile passes them. Each score is the same chain (zero, then the k-steps
    // in order) as below.
    for (int64_t b = 0; b < 4; b += 2) {
      const uint32_t* kb0 = kpack + b * pp * 16;
      _tile_loadd(4, kb0, 64);
      _tile_loadd(5, kb0 + pp * 16, 64);
      if (pp == 32) {
        _tile_loadd(6, kb0 + 16 * 16, 64);
        _tile_loadd(7, kb0 + pp * 16 + 16 * 16, 64);
      }
      for (int64_t m = 0; m < Mp; m += kTileRows) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(2, qa + m * pp, pp * 4);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(1, 2, 5);
        if (pp == 32) {
          _tile_loadd(3, qa + m * pp + 16, pp * 4);
          _tile_dpbf16ps(0, 3, 6);
          _tile_dpbf16ps(1, 3, 7);
        }
        _tile_stored(0, sc + m * L + b * 16, L * 4);
        _tile_stored(1, sc + m * L + b * 16 + 16, L * 4);
      }
    }
  } else {
    for (int64_t m = 0; m < Mp; m += kTileRows) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t k = 0; k < pp; k += 16) {
        _tile_loadd(4, qa + m * pp + k, pp * 4);
        const uint32_t* kb0 = kpack + k * 16;
        _tile_loadd(5, kb0, 64);
        _tile_dpbf16ps(0, 4, 5);
        _tile_loadd(6, kb0 + pp * 16, 64);
        _tile_dpbf16ps(1, 4, 6);
        _tile_loadd(7, kb0 + 2 * pp * 16, 64);
        _tile_dpbf16ps(2, 4, 7);
        _tile_loadd(5, kb0 + 3 * pp * 16, 64);
        _tile_dpbf16ps(3, 4, 5);
      }
      float* out = sc + m * L;
      _tile_stored(0, out, L * 4);
      _tile_stored(1, out + 16, L * 4);
      _tile_stored(2, out + 32, L * 4);
      _tile_stored(3, out + 48, L * 4);
    }
  }
}

struct AmxOps : Avx512Ops {
  static void begin_job(int64_t rows) {
    job_state.rows = rows;
    job_state.G = 0;  // set up at the job's first step, when G and the widths are known
    job_state.qt_m0 = -1;
  }

  // The steps of rows [rows[0].row, rows[0].row + n) of the job, all in one window of L keys.
  template <class T>
  static void rows_step(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G,
                        const RowStep* rows, int64_t n, const AttnWork& w) {
    for (int64_t i = 1; i < n; ++i)
      if (rows[i].row != rows[0].row + i) {  // the tiles take consecutive rows: split where they are not
        rows_step<T>(c, seq, kvh, g0, G, rows, i, w);
        rows_step<T>(c, seq, kvh, g0, G, rows + i, n - i, w);
        return;
      }
    constexpr bool kScaled = kv_scaled_v<T>;
    JobState& J = job_state;
    const int64_t hd = c.p.head_dim, vd = c.kv.value_dim();
    const int64_t pairs = (hd + 1) / 2, pp = (pairs + 15) / 16 * 16;
    const int64_t cols = (vd + 31) / 32 * 32;  // value columns: whole pairs of C tiles
    const int64_t h0 = kvh * (c.p.n_heads / c.p.n_kv_heads) + g0;
    const int64_t M = n * G, Mp = (M + kTileRows - 1) / kTileRows * kTileRows;
    if (J.G != G || J.pp != pp || J.cols != cols) {
      J.G = G, J.pp = pp, J.cols = cols;
      J.q.assign(size_t((J.rows * G + kTileRows) * pp), 0);
      J.acc.assign(size_t((J.rows * G + kTileRows) * cols), 0.0f);
      J.converted.assign(size_t(J.rows), 0);
      J.qt_m0 = -1;
    }
    const auto [s0, kb, ke, k_end] = window_span(rows, n);
    convert_queries(rows, n, h0, hd, G, J.converted, J.q.data(), pp);  // once per job

    // The step's keys and values by column (key - s0); the next step's lines are fetched as this
    // step's keys and values are loaded (WindowCols::Drip: at once, a page's lines overflowed the
    // core's miss buffers here too, decode 1.05-1.18x).
    WindowCols<T> cw;
    window_columns<T>(c, seq, kvh, kb, ke, k_end, s0, cw, false);
    const int64_t nblk = (ke - s0 + 15) / 16;  // blocks of 16 keys with a key in them
    if (int64_t(J.sc.size()) < Mp * L) J.sc.resize(size_t(Mp * L));
    const int64_t base = rows[0].row * G;  // the group's first (row, head) in the job's buffers
    const uint32_t* qa = J.q.data() + base * pp;
    if (M <= kKeysCols)  // a decode row, its key chunks, a few verify rows: no key transpose
      scores_by_keys<T>(cw, nblk, hd, pp, M, qa, base, J.sc.data());
    else
      scores_by_rows<T>(cw, nblk, hd, pp, Mp, qa, J.sc.data());

    // Each row's softmax over its own columns (row_softmax), its weights in bf16 the layout of the
    // value products' A.
    if (int64_t(J.wb.size()) < Mp * L) J.wb.resize(size_t(Mp * L));
    for (int64_t i = 0; i < n; ++i)
      row_softmax<AmxOps, kScaled>(c.p, rows[i], s0, G, J.sc.data() + i * G * L, J.wb.data() + i * G * L,
                                   J.acc.data() + (base + i * G) * cols, cols, vd, cw.ks.data(), cw.vs.data(), w);

    // The step's values, two keys to a 32-bit lane: pair row p of column block e at vp + p * cols + e.
    const int64_t np = (ke - s0 + 1) / 2, nk = (np + 15) / 16;  // key pairs, and their k-steps of 16
    uint32_t* const vpack = aligned64(J.vp, L / 2 * cols);
    pack_window_values<T>(cw, nk * 16, np, vd, cols, vpack);

    // Weighted values: C = the rescaled sums, plus weights x value pairs, k-step by k-step (at
    // most two: L keys). Two column tiles' B tiles stay in tile registers while the row tiles pass.
    for (int64_t e = 0; e < cols; e += 32) {
      const uint32_t* b = vpack + e;
      _tile_loadd(4, b, cols * 4);
      _tile_loadd(5, b + 16, cols * 4);
      if (nk == 2) {
        _tile_loadd(6, b + 16 * cols, cols * 4);
        _tile_loadd(7, b + 16 * cols + 16, cols * 4);
      }
      for (int64_t m = 0; m < Mp; m += kTileRows) {
        float* cbase = J.acc.data() + (base + m) * cols + e;
        const uint16_t* wa = J.wb.data() + m * L;
        _tile_loadd(0, cbase, cols * 4);
        _tile_loadd(1, cbase + 16, cols * 4);
        _tile_loadd(2, wa, L * 2);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(1, 2, 5);
        if (nk == 2) {
          _tile_loadd(3, wa + 32, L * 2);
          _tile_dpbf16ps(0, 3, 6);
          _tile_dpbf16ps(1, 3, 7);
        }
        _tile_stored(0, cbase, cols * 4);
        _tile_stored(1, cbase + 16, cols * 4);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!rows[i].last) continue;
      for (int64_t g = 0; g < G; ++g)
        std::memcpy(rows[i].part + 2 * G + g * vd, J.acc.data() + (base + i * G + g) * cols, size_t(vd) * 4);
    }
  }
};

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) {
  compact_attention_job<AmxOps>(c, j, parts, avx512bf16::attention_job);
}

}  // namespace dpserve::kernels::amx

#pragma GCC diagnostic pop
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
