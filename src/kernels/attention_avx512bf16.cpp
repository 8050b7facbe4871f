// AVX-512 BF16 attention over a bf16, int8 or fp8 KV cache: the products are vdpbf16ps, two
// elements per lane, the way the AMX level takes them in tiles. The rows of a job that take the
// same step (attention_impl.h, RowStep) share it: the step's window of keys is packed once in pairs
// by keys (16 keys to a vector) and, for a job of several rows, its values in pairs of keys; then
// the (row, head) rows go in groups whose scores are small matrix products held in registers (four
// rows by four blocks of 16 keys; eight by two past a head width of 128), each row's softmax, and
// the weighted values (four rows by 64 columns, or eight by 32 as a one-row job converts them).
// Where one core runs one 512-bit FMA per cycle (Zen 5 here) this doubles the products per cycle
// over fp32; Intel cores issue vdpbf16ps at a quarter of their FMAs' rate, so there the level runs
// the AVX-512 kernels instead (kernels::bf16_fma_products(), kernels/isa.h).
//
// Bits: the query is rounded to bf16 (the keys already are; int8 and fp8 codes are bf16 exactly,
// their scales apply outside), and so are the softmax weights. A score is one chain from zero over
// the head dimension's pairs in order; a weighted sum one chain from the rescaled running sum over
// the window's key pairs in order, a key the row does not see weighing zero (+0). So a row's bits
// do not depend on the batch, the rows or heads beside it, or the team: a decode row, a chunk job's
// row and a prefill row take the same operations. An fp32 cache runs the AVX-512 level's kernels.
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

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2"))), apply_to = function)
#endif
// GCC 12's unpack / shuffle / extract intrinsics pass _mm512_undefined_*() as the unused merge
// source, which -Wuninitialized reports once they are inlined here: nothing is read from it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"

// Inside the target region, so the shared algorithm is compiled for this ISA.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx512bf16 {

namespace {

#include "kernels/attention_avx512_ops.h"

#include "kernels/attention_bf16_pairs.h"

#include "kernels/attention_bf16_window.h"

// What a job keeps between its steps: its rows' queries as bf16 pairs (converted at a row's first
// step) and their running weighted sums (written to a row's partial at the end of each of its key
// chunks, when the driver reads them), and the work space of a step.
struct JobState {
  int64_t rows = 0;
  std::vector<uint32_t> q;          // [rows * G][pairs]
  std::vector<uint32_t> qt;         // the same by lanes (rows_step's lanes): [blocks][pairs][16]
  std::vector<uint32_t> qd;         // a one-row job's by groups of lanes (scores_grouped): [pp16][16]
  std::vector<float> acc;           // [rows * G][cols]
  std::vector<uint8_t> converted;   // per row
  std::vector<uint32_t> kp;         // the window's keys: 4 blocks of [pairs][16]
  std::vector<uint32_t> vp;         // its values in pairs of keys: [L / 2][cols]
  std::vector<float> sc;            // a group of rows' scores: [rows * G][L]
  std::vector<uint16_t> wb;         // their weights in bf16: [rows * G][L]
  std::vector<const uint32_t*> qr;  // a group's (row, head) queries
  std::vector<float*> ar;           // and running sums
  std::vector<float> rs;            // and what those are rescaled by (row_softmax_bf16 / rows_softmax_bf16)
  std::vector<float> cap;           // soft-capped scores' maxima (rows_softmax_bf16)
  // A job by lanes (rows_step): each lane's running max and sum between its chunk's first and last
  // steps ([blocks][16]), and its running weighted sums' place in acc; lanes no row holds weigh
  // into `spare` (written, never read).
  std::vector<float> lmx, lsum;
  std::vector<float*> lacc;
  std::vector<float> spare;
  bool lanes_ready = false;  // lacc, lmx and lsum sized and set for this job
};
thread_local JobState job_state;

// Scores of MR (row, head) rows against NB blocks of 16 packed keys (block b at kp + b * kstride):
// row r's query pairs at q[r], its scores of block b, times `scale` (then times the keys' scales
// ks + b * 16 if kScaled), to out + r * L + b * 16. Each score is one chain: zero, then the pairs
// of the head dimension in order, whatever MR or NB, so a row's bits do not depend on the rows or
// blocks beside it. MR x NB sums in registers hide vdpbf16ps's latency; each block's pair is
// loaded once for the MR rows.
template <int MR, int NB, bool kScaled>
void scores_tile(const uint32_t* const* q, int64_t pairs, const uint32_t* kp, int64_t kstride, float scale,
                 const float* ks, float* out) {
  __m512 a[MR][NB];
  #pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) a[r][b] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh k[NB];
    #pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) k[b] = (__m512bh)_mm512_load_si512(kp + b * kstride + p * 16);
    #pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512bh qv = (__m512bh)_mm512_set1_epi32(int(q[r][p]));
      #pragma GCC unroll 16
      for (int b = 0; b < NB; ++b) a[r][b] = _mm512_dpbf16_ps(a[r][b], qv, k[b]);
    }
  }
  const __m512 sv = _mm512_set1_ps(scale);
  #pragma GCC unroll 16
  for (int b = 0; b < NB; ++b) {
    const __m512 kv = kScaled ? _mm512_loadu_ps(ks + b * 16) : sv;
    #pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      __m512 v = _mm512_mul_ps(a[r][b], sv);
      if constexpr (kScaled) v = _mm512_mul_ps(v, kv);
      _mm512_storeu_ps(out + r * L + b * 16, v);
    }
  }
}

// Scores of a one-row job's G heads (G <= 16 / KW) against one set of NA KW keys packed by
// pack_window_keys_grouped (NA = grouped_sums(KW)), times `scale` (then the keys' scales ks[k] if
// kScaled), head g's of key k to out[g L + k]. Head g's query fills lanes [g KW, g KW + KW) (pair
// p's at qd + 16 p, the same pair in each, zero past the head width and in lanes past G KW), so
// with each pair of KW keys broadcast, group i's sum holds key i KW + j of head g in lane g KW + j:
// one vdpbf16ps takes a pair of G heads and KW keys, and only the sums are transposed (a set's NA,
// once), not the keys. Each score is still scores_tile's chain (zero, then the pairs in order: the
// padded pairs add +0, which leaves a sum from +0 as it is), times scale, times the key's scale, so
// the same bits.
template <int KW, bool kScaled>
[[gnu::noinline]] void scores_grouped(const uint32_t* qd, int64_t pp, const uint32_t* kg, int64_t G, float scale,
                                      const float* ks, float* out) {
  constexpr int V = 16 / KW, NA = grouped_sums(KW);  // pairs of a packed vector, sums
  __m512 a[NA];
  #pragma GCC unroll 16
  for (int i = 0; i < NA; ++i) a[i] = _mm512_setzero_ps();
  for (int64_t v = 0; v < pp / V; ++v) {
    const uint32_t* kb = kg + v * 16 * NA;
    #pragma GCC unroll 8
    for (int t = 0; t < V; ++t) {
      const __m512bh q = (__m512bh)_mm512_load_si512(qd + 16 * (v * V + t));
      #pragma GCC unroll 16
      for (int i = 0; i < NA; ++i) {
        const uint32_t* k = kb + 16 * i + KW * t;
        __m512i kv;
        if constexpr (KW == 2) kv = _mm512_set1_epi64(*reinterpret_cast<const long long*>(k));
        else if constexpr (KW == 4) kv = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(k)));
        else kv = _mm512_broadcast_i32x8(_mm256_load_si256(reinterpret_cast<const __m256i*>(k)));
        a[i] = _mm512_dpbf16_ps(a[i], q, (__m512bh)kv);
      }
    }
  }
  const __m512 sv = _mm512_set1_ps(scale);
  #pragma GCC unroll 16
  for (int i = 0; i < NA; ++i) a[i] = _mm512_mul_ps(a[i], sv);
  // Head g's 16 keys of a block from its lanes of the block's sums: a transpose of 64-bit (KW = 2),
  // 128-bit (KW = 4) or 256-bit (KW = 8) pieces.
  const auto put = [&](int64_t g, int64_t blk, __m512 x) {
    if (g >= G) return;
    if constexpr (kScaled) x = _mm512_mul_ps(x, _mm512_loadu_ps(ks + 16 * blk));
    _mm512_storeu_ps(out + g * L + 16 * blk, x);
  };
  const auto sh = [](__m512 x, __m512 y, auto imm) { return _mm512_shuffle_f32x4(x, y, decltype(imm)::value); };
  using Even = std::integral_constant<int, 0x88>;
  using Odd = std::integral_constant<int, 0xDD>;
  if constexpr (KW == 2) {
    for (int blk = 0; blk < 2; ++blk) {  // sums 8 blk .. 8 blk + 7: block blk's keys
      const __m512* b = a + 8 * blk;
      __m512 t[8];
      #pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {  // 128-bit piece j: head 2j (even) or 2j + 1 of sums 2k, 2k + 1
        t[2 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b[2 * k]), _mm512_castps_pd(b[2 * k + 1])));
        t[2 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b[2 * k]), _mm512_castps_pd(b[2 * k + 1])));
      }
      #pragma GCC unroll 2
      for (int o = 0; o < 2; ++o) {  // heads of parity o
        const __m512 u0 = sh(t[o], t[2 + o], Even{}), u1 = sh(t[o], t[2 + o], Odd{});
        const __m512 u2 = sh(t[4 + o], t[6 + o], Even{}), u3 = sh(t[4 + o], t[6 + o], Odd{});
        put(o, blk, sh(u0, u2, Even{}));
        put(4 + o, blk, sh(u0, u2, Odd{}));
        put(2 + o, blk, sh(u1, u3, Even{}));
        put(6 + o, blk, sh(u1, u3, Odd{}));
      }
    }
  } else if constexpr (KW == 8) {
    for (int blk = 0; blk < 4; ++blk) {  // sums 2 blk, 2 blk + 1: head 0 in their low halves
      put(0, blk, sh(a[2 * blk], a[2 * blk + 1], std::integral_constant<int, 0x44>{}));
      put(1, blk, sh(a[2 * blk], a[2 * blk + 1], std::integral_constant<int, 0xEE>{}));
    }
  } else {
    for (int blk = 0; blk < 4; ++blk) {  // sums 4 blk .. 4 blk + 3
      const __m512* b = a + 4 * blk;
      const __m512 x0 = sh(b[0], b[1], Even{}), x1 = sh(b[0], b[1], Odd{});
      const __m512 y0 = sh(b[2], b[3], Even{}), y1 = sh(b[2], b[3], Odd{});
      put(0, blk, sh(x0, y0, Even{}));
      put(2, blk, sh(x0, y0, Odd{}));
      put(1, blk, sh(x1, y1, Even{}));
      put(3, blk, sh(x1, y1, Odd{}));
    }
  }
}

// acc[r] (columns [e, e + 16 NC)) = acc[r] times rescale[r] (zero where rescale[r] < 0: the row's
// first step) plus the weighted values of pairs [0, np) of the window, for MR (row, head) rows (row
// r's weights as bf16 pairs: pair p at w + r L / 2 + p, or w + r + 16 p by lanes (kLanes)). The
// rescaling rides on the load a step makes anyway (a pass of its own over the running sums cost 4 %
// of prefill attention). Not inlined: inlined into its caller, GCC reloaded the values for every row. Each lane is one chain:
// the rescaled running sum, then the pairs in order (a pair no row sees weighs zero and adds +0), whatever MR,
// NC or the values' source: packed (vp, pair row p at vp + p * cols) or, NC = 2, converted here
// from the window's columns as window_value_pair converts them (pair p's rows at va[p], vb[p], read
// at column e under ma[p] & full, mb[p] & full: zero where none). ahead: the window whose next
// step's values are fetched as this step's are read (a line for each row loaded), or null.
template <int MR, int NC, bool kPacked, class T, bool kLanes>
[[gnu::noinline]] void values_tile(float* const* acc, const float* rescale, const uint32_t* w, int64_t np, int64_t e,
                 const uint32_t* vp, int64_t cols, const T* const* va, const T* const* vb, const __mmask32* ma,
                 const __mmask32* mb, __mmask32 full, typename WindowCols<T>::Drip* ahead) {
  static_assert(kPacked || NC == 2);
  constexpr int64_t ldw = kLanes ? 1 : L / 2, ldp = kLanes ? 16 : 1;
  __m512 a[MR][NC];
  #pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 16
    for (int c = 0; c < NC; ++c)
      a[r][c] = rescale[r] < 0 ? _mm512_setzero_ps()
                               : _mm512_mul_ps(_mm512_loadu_ps(acc[r] + e + 16 * c), _mm512_set1_ps(rescale[r]));
  const __m512i lo = _mm512_load_si512(kPairLo), hi = _mm512_load_si512(kPairHi);
  for (int64_t p = 0; p < np; ++p) {
    __m512bh v[NC];
    if constexpr (kPacked) {
      #pragma GCC unroll 16
      for (int c = 0; c < NC; ++c) v[c] = (__m512bh)_mm512_load_si512(vp + p * cols + e + 16 * c);
    } else {
      if (ahead) ahead->next(), ahead->next();
      const __m512i r0 = load32_bf16_masked(va[p] + e, ma[p] & full);
      const __m512i r1 = load32_bf16_masked(vb[p] + e, mb[p] & full);
      v[0] = (__m512bh)_mm512_permutex2var_epi16(r0, lo, r1);
      v[1] = (__m512bh)_mm512_permutex2var_epi16(r0, hi, r1);
    }
    #pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512bh wv = (__m512bh)_mm512_set1_epi32(int(w[r * ldw + p * ldp]));
      #pragma GCC unroll 16
      for (int c = 0; c < NC; ++c) a[r][c] = _mm512_dpbf16_ps(a[r][c], v[c], wv);
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(acc[r] + e + 16 * c, a[r][c]);
}

// The lanes of each of eight vectors folded into one lane by op (an add or a max): lane k of the
// result (k < 8) is v[k]'s. A fixed tree per lane (halves, quarters, then the four lanes left of
// each quarter), whatever the other vectors hold, so a head's sum or max does not depend on the
// heads beside it; in about 20 shuffles and ops where folding each vector alone took 56 in eight
// dependent chains.
template <class Op>
[[gnu::always_inline]] inline __m512 fold8(const __m512 v[8], Op op) {
  __m512 h[4], q[2];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)  // (v[2i] | v[2i+1]): each one's 16 lanes folded to 8
    h[i] = op(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i)  // 128-bit block k: vector 4i + k's lanes folded to 4
    q[i] = op(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88), _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xDD));
  // Block k: lanes of vector k and k + 4 interleaved, folded to two, then to one each.
  const __m512 r = op(_mm512_unpacklo_ps(q[0], q[1]), _mm512_unpackhi_ps(q[0], q[1]));
  const __m512 t = op(r, _mm512_permute_ps(r, 0x4E));  // block k: vector k, vector k + 4, again
  return _mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0), t);
}

// The step's softmax of ng <= 8 (row, head) slots held in one vector's lanes, slot k's scores (already
// scaled) at x + k L, its columns of the window's block c of 16 keys masks(k, c): the step's
// maxima (or the soft-capped scores' maxima, cmax), the new running maxima nw from the old ones,
// their corrections corr, then each slot's exponentials (a score less its running max is never
// positive), 16 columns at a time from the window's start (a row's sums and maxima take the same
// pieces in any group), and its weights in bf16 (times the values' scales vs) to wb + k L (zero
// wherever the slot does not look); den: the running sums d, corrected, plus the step's. Each lane
// folds on its own (fold8), so a slot's bits do not depend on the slots beside it. Nothing the
// chain needs again goes through memory: a masked store does not forward to the loads after it,
// and the chain (maxima, correction, exponentials) waited on that.
template <bool kScaled, class Masks>
[[gnu::always_inline]] inline void softmax_slots(int64_t ng, const float* x, uint16_t* wb, const float* vs,
                                                 const float* cmax, Masks masks, __m512 old, __m512 d, __m512& nw,
                                                 __m512& corr, __m512& den) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const auto max_op = [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); };
  const auto add_op = [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); };
  __m512 smax;
  if (cmax) {
    smax = _mm512_mask_loadu_ps(ninf, __mmask16((1u << ng) - 1), cmax);
  } else {
    __m512 m[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      m[k] = ninf;
      if (k < ng)
        for (int c = 0; c < 4; ++c)
          m[k] = _mm512_mask_max_ps(m[k], masks(k, c), m[k], _mm512_maskz_loadu_ps(masks(k, c), x + k * L + 16 * c));
    }
    smax = fold8(m, max_op);
  }
  nw = _mm512_max_ps(old, smax);
  // exp(0) is 1 exactly; a partial with no keys yet (max -inf) has nothing to rescale.
  const __mmask16 had = _mm512_cmp_ps_mask(old, ninf, _CMP_NEQ_OQ);
  corr = _mm512_maskz_mov_ps(had, exp512_nonpositive(_mm512_sub_ps(old, nw)));
  __m512 sum[8];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    sum[k] = _mm512_setzero_ps();
    if (k >= ng) continue;
    const __m512 sh = _mm512_permutexvar_ps(_mm512_set1_epi32(k), nw);
    const float* xg = x + k * L;
    uint16_t* wg = wb + k * L;
    for (int c = 0; c < 4; ++c) {
      const __mmask16 kc = masks(k, c);
      if (!kc) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(wg + 16 * c), _mm256_setzero_si256());
        continue;
      }
      const __m512 e = _mm512_maskz_mov_ps(kc, exp512_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(kc, xg + 16 * c), sh)));
      sum[k] = _mm512_add_ps(sum[k], e);
      const __m512 wv = kScaled ? _mm512_mul_ps(e, _mm512_maskz_loadu_ps(kc, vs + 16 * c)) : e;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(wg + 16 * c), (__m256i)_mm512_cvtneps_pbh(wv));
    }
  }
  den = _mm512_add_ps(_mm512_mul_ps(d, corr), fold8(sum, add_op));
}

// Scores of a group's 16 lanes (rows_step's lanes: a (row, head) each) against a block of 16 packed
// keys (kb: pairs rows of 16 keys, as pack_key_pairs_rows lays them out), the lanes' queries by
// lanes (pair p's 16 at qt + 16 p): key k's 16 scores, times `scale` (and the key's scale ks[k] if
// kScaled), to out + 16 k. A lane's score is scores_tile's chain for its row and that key (zero,
// then the head dimension's pairs in order, each a vdpbf16ps of the same two pairs in the same
// places), so its bits are the same; here the key's pair is broadcast, there the query's.
template <bool kScaled>
void scores_lanes(const uint32_t* qt, int64_t pairs, const uint32_t* kb, float scale, const float* ks, float* out) {
  __m512 a[16];
  #pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) a[k] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh q = (__m512bh)_mm512_loadu_si512(qt + 16 * p);
    #pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) a[k] = _mm512_dpbf16_ps(a[k], q, (__m512bh)_mm512_set1_epi32(int(kb[16 * p + k])));
  }
  const __m512 sv = _mm512_set1_ps(scale);
  #pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) {
    __m512 v = _mm512_mul_ps(a[k], sv);
    if constexpr (kScaled) v = _mm512_mul_ps(v, _mm512_set1_ps(ks[k]));
    _mm512_storeu_ps(out + 16 * k, v);
  }
}

// scores_lanes with a block's bf16 keys read from their cache rows (key k's at rows[k]; null: no
// key, a zero score) instead of packed: key k's pair p is the 32 bits at rows[k] + 2p, the pair
// pack_key_pairs_rows puts at kb[16 p + k], so every score has scores_lanes' bits. A one-row job
// reads each key once, and packing them cost more than scoring them (MLA's absorbed decode, sixteen
// heads a row: 38 % of its time against 19 %). drip: a line of the next step's keys for each pair (a
// block's rows hold as many lines as pairs). The head width is even (no element past it is read).
// kStride > 0: the sixteen rows kStride pairs apart from rows[0] (one address register for all of
// them: sixteen row pointers spilled out of the general registers).
template <int kStride>
[[gnu::noinline]] void scores_lanes_rows(const uint32_t* qt, int64_t pairs, const bf16_t* const* rows, float scale,
                                         float* out, WindowCols<bf16_t>::Drip& drip) {
  thread_local std::vector<uint32_t> zeros;
  if (int64_t(zeros.size()) < pairs) zeros.assign(size_t(pairs), 0);
  const uint32_t* r[16];
  #pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) r[k] = rows[k] ? reinterpret_cast<const uint32_t*>(rows[k]) : zeros.data();
  __m512 a[16];
  #pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) a[k] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    drip.next();
    const __m512bh q = (__m512bh)_mm512_loadu_si512(qt + 16 * p);
    #pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) {
      const uint32_t pair = kStride > 0 ? r[0][k * kStride + p] : r[k][p];
      a[k] = _mm512_dpbf16_ps(a[k], q, (__m512bh)_mm512_set1_epi32(int(pair)));
    }
  }
  const __m512 sv = _mm512_set1_ps(scale);
  #pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) _mm512_storeu_ps(out + 16 * k, _mm512_mul_ps(a[k], sv));
}

// Two columns' bf16 weights (cvtne2ps: the first's 16 in the low half) as 16 pairs, lane l's two.
alignas(64) constexpr uint16_t kLanePairs[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

// The step's softmax of a group's lanes `on` (a (row, head) each) from their scores by column
// (column j's 16 at s + 16 j, ncol of them, whole blocks of 16), lane l seeing columns
// [off[l], end[l]) (all ncol if `full`), old / d their running maxima and sums: the new maxima nw,
// the corrections corr and the sums den, and the weights of pairs [0, np) in bf16 by lanes (pair
// p's 16 at w + 16 p; zero where a lane does not look). A lane takes the operations softmax_slots
// takes for its slot, in the same order: the same maximum, exponentials and weights, and the sum
// in fold8's tree (columns l, l + 16, l + 32, l + 48 from zero, then l with l + 8, with l + 4, with
// l + 2, and the two left), so its bits are those; nothing crosses lanes, so there is no fold.
template <bool kScaled>
void lanes_softmax(const float* s, int64_t ncol, int64_t np, __mmask16 on, __m512i off, __m512i end, bool full,
                   const float* vs, __m512 old, __m512 d, uint32_t* w, __m512& nw, __m512& corr, __m512& den) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const auto vis = [&](int64_t j) {
    if (full) return on;
    const __m512i jv = _mm512_set1_epi32(int(j));
    return _mm512_mask_cmplt_epi32_mask(_mm512_mask_cmple_epi32_mask(on, off, jv), jv, end);
  };
  __m512 mx[4] = {ninf, ninf, ninf, ninf};  // four chains; a maximum is the same in any order
  for (int64_t j = 0; j < ncol; j += 4)
    #pragma GCC unroll 4
    for (int u = 0; u < 4; ++u)
      mx[u] = _mm512_mask_max_ps(mx[u], vis(j + u), mx[u], _mm512_loadu_ps(s + 16 * (j + u)));
  nw = _mm512_max_ps(old, _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3])));
  const __mmask16 had = _mm512_cmp_ps_mask(old, ninf, _CMP_NEQ_OQ);
  corr = _mm512_maskz_mov_ps(had, exp512_nonpositive(_mm512_sub_ps(old, nw)));
  __m512 S[16];
  #pragma GCC unroll 16
  for (int l = 0; l < 16; ++l) S[l] = _mm512_setzero_ps();
  const __m512i pair = _mm512_load_si512(kLanePairs);
  for (int64_t c = 0; c < ncol; c += 16) {
    #pragma GCC unroll 8
    for (int l = 0; l < 16; l += 2) {
      __m512 wv[2];
      #pragma GCC unroll 2
      for (int u = 0; u < 2; ++u) {
        const int64_t j = c + l + u;
        const __m512 e = _mm512_maskz_mov_ps(vis(j), exp512_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * j), nw)));
        S[l + u] = _mm512_add_ps(S[l + u], e);
        wv[u] = kScaled ? _mm512_mul_ps(e, _mm512_set1_ps(vs[j])) : e;
      }
      if ((c + l) / 2 < np)
        _mm512_storeu_si512(w + 8 * (c + l),
                            _mm512_permutexvar_epi16(pair, (__m512i)_mm512_cvtne2ps_pbh(wv[1], wv[0])));
    }
  }
  __m512 H[8];
  #pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) H[l] = _mm512_add_ps(S[l], S[l + 8]);
  #pragma GCC unroll 4
  for (int l = 0; l < 4; ++l) H[l] = _mm512_add_ps(H[l], H[l + 4]);
  #pragma GCC unroll 2
  for (int l = 0; l < 2; ++l) H[l] = _mm512_add_ps(H[l], H[l + 2]);
  den = _mm512_add_ps(_mm512_mul_ps(d, corr), _mm512_add_ps(H[0], H[1]));
}

// One row's softmax over its own columns of the window from s0, given its G heads' scores (head g's
// L columns at x + g * L), eight heads at a time (softmax_slots), weights to wrow. The row's partial
// (max, sum) moves on; what its running weighted sums are to be multiplied by before the step's
// values goes to rescale (G floats: -1 at its chunk's first step, where they start from zero;
// values_tile applies it).
template <class Ops, bool kScaled>
void row_softmax_bf16(const AttnParams& p, const RowStep& r, int64_t s0, int64_t G, float* x, uint16_t* wrow,
                      float* rescale, const float* vs, const AttnWork& w) {
  const int64_t off = r.kb - s0, nj = r.ke - r.kb;
  __mmask16 mk[4];
  for (int c = 0; c < 4; ++c) mk[c] = cols_mask(off, nj, 16 * c);
  const auto masks = [&](int, int c) { return mk[c]; };
  // Soft-capped scores (Gemma 2) are capped in place first, their maxima taken there.
  if (p.softcap > 0) softcap_step<Ops>(x + off, L, G, nj, p.softcap, w.pmx);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t g0 = 0; g0 < G; g0 += 8) {
    const int64_t ng = std::min<int64_t>(8, G - g0);
    const __mmask16 hm = __mmask16((1u << ng) - 1);
    __m512 nw, corr, den;
    softmax_slots<kScaled>(ng, x + g0 * L, wrow + g0 * L, vs, p.softcap > 0 ? w.pmx + g0 : nullptr, masks,
                           _mm512_mask_loadu_ps(ninf, hm, r.part + g0), _mm512_maskz_loadu_ps(hm, r.part + G + g0), nw,
                           corr, den);
    _mm512_mask_storeu_ps(r.part + g0, hm, nw);
    _mm512_mask_storeu_ps(r.part + G + g0, hm, den);
    _mm512_mask_storeu_ps(rescale + g0, hm, r.first ? _mm512_set1_ps(-1.0f) : corr);
  }
}

// The same for n rows (n <= 16: rows_step's groups) of fewer than four heads each (one in MLA's
// decompressed form and in models without grouped queries), their (row, head) slots eight at a time
// whichever rows they belong to, so a vector's lanes are not left mostly empty (one head a row took
// a fold of eight vectors for one lane). Row i's head g: scores at x + (i G + g) L, weights at wb +
// (i G + g) L, rescale[i G + g]. Four heads of two rows a group measured no faster than
// row_softmax_bf16's one row, and G of eight or more fills the lanes anyway: those take it.
// capmax: n G floats of scratch (soft-capped scores' maxima).
template <class Ops, bool kScaled>
void rows_softmax_bf16(const AttnParams& p, const RowStep* rows, int64_t n, int64_t s0, int64_t G, float* x,
                       uint16_t* wb, float* rescale, const float* vs, float* capmax) {
  std::array<std::array<__mmask16, 4>, 16> mk;  // per row, its columns of each block of 16
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = rows[i].kb - s0, nj = rows[i].ke - rows[i].kb;
    for (int c = 0; c < 4; ++c) mk[size_t(i)][size_t(c)] = cols_mask(off, nj, 16 * c);
    if (p.softcap > 0) softcap_step<Ops>(x + i * G * L + off, L, G, nj, p.softcap, capmax + i * G);
  }
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t M = n * G;
  int64_t ri = 0, rg = 0;  // the row and head of a group's first slot
  for (int64_t m0 = 0; m0 < M; m0 += 8) {
    const int64_t ng = std::min<int64_t>(8, M - m0);
    // The group's runs of slots of one row: the row's partial, its first head g, cnt heads on the
    // lanes from k.
    struct Run {
      float* part;
      int64_t g;
      __mmask16 lm, sm;  // (1 << cnt) - 1, and the same from lane k
    };
    std::array<Run, 8> runs;
    std::array<const __mmask16*, 8> km{};
    int nr = 0;
    __mmask16 first = 0;
    for (int64_t k = 0; k < ng;) {
      const int64_t cnt = std::min(ng - k, G - rg);
      const __mmask16 lm = __mmask16((1u << cnt) - 1), sm = __mmask16(lm << k);
      runs[size_t(nr++)] = {rows[ri].part, rg, lm, sm};
      if (rows[ri].first) first = __mmask16(first | sm);
      for (int64_t j = 0; j < cnt; ++j) km[size_t(k + j)] = mk[size_t(ri)].data();
      k += cnt;
      rg += cnt;
      if (rg == G) rg = 0, ++ri;
    }
    // The slots' running maxima and sums from their rows' partials, a run at a time, loaded, then
    // spread to its lanes (scalars stored and loaded as a vector would not forward).
    __m512 old = ninf, d = _mm512_setzero_ps();
    for (int j = 0; j < nr; ++j) {
      const Run& u = runs[size_t(j)];
      if (u.lm == 1) {  // one head: a broadcast is cheaper than an expand
        old = _mm512_mask_mov_ps(old, u.sm, _mm512_set1_ps(u.part[u.g]));
        d = _mm512_mask_mov_ps(d, u.sm, _mm512_set1_ps(u.part[G + u.g]));
      } else {
        old = _mm512_mask_expand_ps(old, u.sm, _mm512_maskz_loadu_ps(u.lm, u.part + u.g));
        d = _mm512_mask_expand_ps(d, u.sm, _mm512_maskz_loadu_ps(u.lm, u.part + G + u.g));
      }
    }
    __m512 nw, corr, den;
    softmax_slots<kScaled>(ng, x + m0 * L, wb + m0 * L, vs, p.softcap > 0 ? capmax + m0 : nullptr,
                           [&](int k, int c) { return km[size_t(k)][c]; }, old, d, nw, corr, den);
    for (int j = 0; j < nr; ++j) {
      const Run& u = runs[size_t(j)];
      _mm512_mask_storeu_ps(u.part + u.g, u.lm, _mm512_maskz_compress_ps(u.sm, nw));
      _mm512_mask_storeu_ps(u.part + G + u.g, u.lm, _mm512_maskz_compress_ps(u.sm, den));
    }
    _mm512_mask_storeu_ps(rescale + m0, __mmask16((1u << ng) - 1), _mm512_mask_mov_ps(corr, first, _mm512_set1_ps(-1.0f)));
  }
}

struct Bf16Ops : Avx512Ops {
  // merge_partial: st = st merged with the later chunk's partial p, both of G heads, sixteen heads'
  // maxima, corrections and sums in one vector (a correction is exactly 1 where a maximum is the
  // merged one, 0 for a partial without keys), each head's weighted values times its correction
  // plus the other's times its own, one FMA a lane. The scalar merge, glibc's expf a head at a
  // time, was 4.4-4.9 % of a long prefill's attention; corrections computed in a vector must not be
  // read back one by one (a masked store does not forward to scalar loads).
  static void merge_partials(float* st, const float* p, int64_t G, int64_t vd) {
    const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t g0 = 0; g0 < G; g0 += 16) {
      const int64_t n = std::min<int64_t>(16, G - g0);
      const __mmask16 k = __mmask16((1u << n) - 1);
      const __m512 a = _mm512_mask_loadu_ps(ninf, k, st + g0), b = _mm512_mask_loadu_ps(ninf, k, p + g0);
      const __m512 m = _mm512_max_ps(a, b);
      const __m512 ca = merge_corr(a, m), cb = merge_corr(b, m);
      const __m512 sa = _mm512_maskz_loadu_ps(k, st + G + g0), sb = _mm512_maskz_loadu_ps(k, p + G + g0);
      _mm512_mask_storeu_ps(st + G + g0, k, _mm512_fmadd_ps(sb, cb, _mm512_mul_ps(sa, ca)));
      _mm512_mask_storeu_ps(st + g0, k, m);
      for (int64_t i = 0; i < n; ++i)
        merge_values(st + 2 * G + (g0 + i) * vd, p + 2 * G + (g0 + i) * vd,
                     _mm512_permutexvar_ps(_mm512_set1_epi32(int(i)), ca),
                     _mm512_permutexvar_ps(_mm512_set1_epi32(int(i)), cb), vd);
    }
  }
  // What a partial with maxima x is multiplied by to merge into maxima m (the larger): exactly 1
  // where x is m, 0 where x has no keys (-inf).
  [[gnu::always_inline]] static __m512 merge_corr(__m512 x, __m512 m) {
    const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    const __m512 e =
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_OQ), exp512_nonpositive(_mm512_sub_ps(x, m)));
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, m, _CMP_EQ_OQ), _mm512_set1_ps(1.0f));
  }
  // x = x times ca plus y times cb, vd floats: a head's weighted values merged.
  [[gnu::always_inline]] static void merge_values(float* x, const float* y, __m512 ca, __m512 cb, int64_t vd) {
    for (int64_t d = 0; d < vd; d += 16) {
      const __mmask16 dm = head_mask(vd, d);
      const __m512 xa = _mm512_mul_ps(_mm512_maskz_loadu_ps(dm, x + d), ca);
      _mm512_mask_storeu_ps(x + d, dm, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(dm, y + d), cb, xa));
    }
  }

  static void begin_job(int64_t rows) {
    // Only which rows' queries are converted is reset: a row's running sums are zeroed at its first
    // step, and a job of one row (decode's key chunks) should not clear 50 KB of buffers (MLA).
    job_state.rows = rows;
    job_state.converted.assign(size_t(rows), 0);
    job_state.lanes_ready = false;
  }

  // The steps of a job's rows in one window of L keys. The window's keys are packed once for all
  // of them and, where the job has several rows, its values too; then the rows go in groups of
  // about 16 (row, head) rows: their scores, their softmax, their weighted values, so a group's
  // scores and weights stay in L1. A job of rows of fewer than four heads (several rows, no soft
  // cap) takes its groups by lanes: a group is 16 / G consecutive rows of the job, a (row, head) a
  // lane of one vector for each key (scores_lanes, lanes_softmax); the others one (row, head) a row
  // of scores (scores_tile, row_softmax_bf16 / rows_softmax_bf16). Both give each (row, head) the
  // same bits, so a row's do not depend on which its job took.
  template <class T>
    requires(!std::is_same_v<T, float>)
  static bool rows_step(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G,
                        const RowStep* rows, int64_t n, const AttnWork& w) {
    constexpr bool kScaled = kv_scaled_v<T>;
    JobState& J = job_state;
    const int64_t hd = c.p.head_dim, vd = c.kv.value_dim();
    const int64_t pairs = (hd + 1) / 2, cols = value_pair_cols(vd);
    const int64_t h0 = kvh * (c.p.n_heads / c.p.n_kv_heads) + g0;
    const int64_t per = std::max<int64_t>(1, 16 / G);  // rows of a group
    // One head a row folded eight slots' sums across lanes and gathered its slots' state from
    // several rows: a third of such a prefill's attention, against a fifth with eight heads.
    // Sixteen heads a row (MLA's absorbed decode) fill a vector's lanes alone: a one-row job over
    // bf16 keys takes them by lanes too, its keys scored straight from the cache
    // (scores_lanes_rows). int8 / fp8 keys would need converting by lanes as well: such jobs packed
    // by lanes ran 0.92-0.94x.
    constexpr bool kBf16 = std::is_same_v<T, bf16_t>;
    const bool raw_keys = kBf16 && G == 16 && J.rows == 1 && c.p.softcap <= 0 && hd % 2 == 0;
    const bool by_lanes = (G < 4 && c.p.softcap <= 0 && J.rows * G >= 8) || raw_keys;
    if (int64_t(J.q.size()) < J.rows * G * pairs) J.q.resize(size_t(J.rows * G * pairs));
    if (int64_t(J.acc.size()) < J.rows * G * cols) J.acc.resize(size_t(J.rows * G * cols));
    const int64_t qt_size = (J.rows + per - 1) / per * pairs * 16;
    if (by_lanes && int64_t(J.qt.size()) < qt_size) J.qt.resize(size_t(qt_size));
    // A one-row job (decode) of two to eight heads scores its keys in groups of KW
    // (scores_grouped): packing 16 keys for scores_tile cost more than scoring them.
    const bool grouped = !by_lanes && J.rows == 1 && G >= 2 && G <= 8;
    const int64_t kw = G > 4 ? 2 : G > 2 ? 4 : 8, pp16 = (pairs + 15) / 16 * 16;
    const int64_t set_keys = kw * grouped_sums(int(kw));
    const auto with_kw = [&](auto&& f) {  // f(KW) for this job's kw
      if (kw == 2) f(std::integral_constant<int, 2>{});
      else if (kw == 4) f(std::integral_constant<int, 4>{});
      else f(std::integral_constant<int, 8>{});
    };
    uint32_t* const qd = grouped ? aligned64(J.qd, pp16 * 16) : nullptr;
    // Named, not bound: clang (the sanitizer builds) does not let the lambda below capture bindings.
    const WindowSpan span = window_span(rows, n);
    const int64_t s0 = span.s0, kb = span.kb, ke = span.ke, k_end = span.k_end;
    // Each row's queries once per job (at its first step), by lanes too for a job by lanes.
    convert_queries(rows, n, h0, hd, G, J.converted, J.q.data(), pairs, [&](int64_t r) {
      if (grouped) {  // head g's pairs in lanes [g kw, g kw + kw), zero past the head and G kw lanes
        const uint32_t* q = J.q.data() + r * G * pairs;
        std::fill(qd, qd + pp16 * 16, 0u);
        for (int64_t g = 0; g < G; ++g)
          for (int64_t p = 0; p < pairs; ++p)
            for (int64_t j = 0; j < kw; ++j) qd[p * 16 + g * kw + j] = q[g * pairs + p];
      }
      if (!by_lanes) return;
      const uint32_t* q = J.q.data() + r * G * pairs;
      uint32_t* qt = J.qt.data() + r / per * pairs * 16 + r % per * G;
      for (int64_t g = 0; g < G; ++g)
        for (int64_t p = 0; p < pairs; ++p) qt[p * 16 + g] = q[g * pairs + p];
    });

    WindowCols<T> cw;
    window_columns<T>(c, seq, kvh, kb, ke, k_end, s0, cw, false);
    const int64_t nsets = (ke - s0 + set_keys - 1) / set_keys, set_size = pp16 * set_keys;
    uint32_t* const kpack = aligned64(J.kp, grouped ? nsets * set_size : 4 * pairs * 16);
    if (grouped) with_kw([&](auto KW) { pack_window_keys_grouped<KW, T>(cw, nsets, hd, pp16, kpack); });
    else if (!raw_keys) pack_window_keys<T>(cw, (ke - s0 + 15) / 16, hd, pairs, kpack);
    // A job of one row (decode) converts the values as it weighs them: storing them cost decode.
    // Except int8 / fp8 values weighed by more than eight heads (MLA's sixteen): each group of eight
    // would convert them again, and the conversion costs more than the store.
    const int64_t np_all = (ke - s0 + 1) / 2;
    const bool packed = n > 1 || (kv_scaled_v<T> && G > 8);
    uint32_t* const vpack = packed ? aligned64(J.vp, L / 2 * cols) : nullptr;
    if (packed) pack_window_values<T>(cw, np_all, np_all, vd, cols, vpack);

    const int64_t slots = std::max<int64_t>(per * G, 16);
    if (int64_t(J.sc.size()) < slots * L) J.sc.resize(size_t(slots * L)), J.wb.resize(size_t(slots * L));
    J.qr.resize(size_t(slots));
    J.ar.resize(size_t(slots));
    J.rs.resize(size_t(slots));
    J.cap.resize(size_t(slots));
    uint32_t* const wr = reinterpret_cast<uint32_t*>(J.wb.data());

    // Weighted values of (row, head) rows [m0, m1) of a group (their running sums ar[m], rescales
    // rs[m], weights as values_tile takes them from wr): 64 columns by four rows from the packed
    // pairs, else 32 columns by up to eight rows as they are converted.
    std::array<const T*, L / 2> va, vb;  // a one-row job's value pairs: their rows, written for the pairs read
    std::array<__mmask32, L / 2> ma, mb;  // and all or none of a block's elements
    auto vdrip = cw.values_ahead();  // the next step's values, as a one-row job reads this step's
    const auto weigh = [&]<bool kLanes>(float* const* ar, const float* rs, int64_t m0, int64_t m1, int64_t np) {
      constexpr int64_t ldw = kLanes ? 1 : L / 2;
      if (!packed) {  // each pair's rows as window_value_pair takes them, once for every column block
        const T* some = cw.v[size_t(kb - s0)];  // a row the window has: where nothing is read (mask 0)
        for (int64_t p = 0; p < np; ++p) {
          const T* x = p < np_all ? cw.v[size_t(2 * p)] : nullptr;
          const T* y = p < np_all ? cw.v[size_t(2 * p + 1)] : nullptr;
          va[size_t(p)] = x ? x : y ? y : some;
          vb[size_t(p)] = y ? y : va[size_t(p)];
          ma[size_t(p)] = x || y ? ~__mmask32(0) : 0;
          mb[size_t(p)] = y ? ~__mmask32(0) : 0;
        }
      }
      for (int64_t e = 0; e < cols;) {
        const int64_t ec = packed && cols - e >= 64 ? 64 : 32;
        const int64_t ms = packed ? 4 : 8;
        const __mmask32 full = first32(vd - e);  // e < vd: cols is vd rounded up to 32
        for (int64_t m = m0; m < m1; m += ms) {
          typename WindowCols<T>::Drip* ahead = !packed && m == m0 ? &vdrip : nullptr;
          const uint32_t* wm = wr + m * ldw;
          if (packed && ec == 64)
            with_count<4>(std::min<int64_t>(4, m1 - m), [&](auto MR) {
              values_tile<MR, 4, true, T, kLanes>(ar + m, rs + m, wm, np, e, vpack, cols, nullptr, nullptr,
                                          nullptr, nullptr, full, nullptr);
            });
          else if (packed)
            with_count<4>(std::min<int64_t>(4, m1 - m), [&](auto MR) {
              values_tile<MR, 2, true, T, kLanes>(ar + m, rs + m, wm, np, e, vpack, cols, nullptr, nullptr,
                                          nullptr, nullptr, full, nullptr);
            });
          else
            with_count<8>(std::min<int64_t>(8, m1 - m), [&](auto MR) {
              values_tile<MR, 2, false, T, kLanes>(ar + m, rs + m, wm, np, e, nullptr, cols, va.data(),
                                           vb.data(), ma.data(), mb.data(), full, ahead);
            });
        }
        e += ec;
      }
    };

    if (by_lanes) {
      const int64_t nlanes = (J.rows + per - 1) / per * 16;
      if (!J.lanes_ready) {
        J.lanes_ready = true;
        J.lmx.resize(size_t(nlanes)), J.lsum.resize(size_t(nlanes)), J.lacc.resize(size_t(nlanes));
        if (int64_t(J.spare.size()) < cols) J.spare.resize(size_t(cols));
        for (int64_t l = 0; l < nlanes; ++l) {
          const int64_t r = l / 16 * per + l % 16 / G, g = l % 16 % G;
          J.lacc[size_t(l)] = l % 16 < per * G && r < J.rows ? J.acc.data() + (r * G + g) * cols : J.spare.data();
        }
      }
      const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      for (int64_t i0 = 0; i0 < n;) {
        // The rows of block blk (rows [row0, row0 + per) of the job) that take this step: lanes
        // [lo, hi), those of row r from (r - row0) G.
        const int64_t blk = rows[i0].row / per, row0 = blk * per;
        const auto lanes = [&](int64_t r) { return __mmask16(((1u << G) - 1) << ((r - row0) * G)); };
        __mmask16 on = 0, fresh = 0;
        int64_t i1 = i0, gke = 0;
        bool full = true;
        for (; i1 < n && rows[i1].row < row0 + per; ++i1) {
          const RowStep& r = rows[i1];
          on |= lanes(r.row);
          if (r.first) fresh |= lanes(r.row);
          full = full && r.kb == s0 && r.ke == s0 + L;
          gke = std::max(gke, r.ke);
        }
        const int64_t lo = (rows[i0].row - row0) * G, hi = (rows[i1 - 1].row - row0 + 1) * G;
        const int64_t nblk = (gke - s0 + 15) / 16, np = (gke - s0 + 1) / 2;
        // Lanes between lo and hi that no row of the step holds weigh zero into `spare`; a lane's
        // running state is its own to keep (never read unless its row takes the step).
        float* const* ar = J.lacc.data() + blk * 16;
        if (hi - lo != (i1 - i0) * G) {
          for (int64_t l = lo; l < hi; ++l) J.ar[size_t(l)] = on >> l & 1 ? ar[l] : J.spare.data();
          ar = J.ar.data();
          fresh |= __mmask16(~on & (((1u << hi) - 1) & ~((1u << lo) - 1)));
        }
        __m512i off = _mm512_setzero_si512(), end = off;
        if (!full) {
          alignas(64) std::array<int32_t, 16> o, e;
          o.fill(int32_t(L)), e.fill(0);
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t g = 0; g < G; ++g) {
              const size_t l = size_t((rows[i].row - row0) * G + g);
              o[l] = int32_t(rows[i].kb - s0), e[l] = int32_t(rows[i].ke - s0);
            }
          off = _mm512_load_si512(o.data()), end = _mm512_load_si512(e.data());
        }

        const uint32_t* qt = J.qt.data() + blk * pairs * 16;
        if constexpr (kBf16) {
          if (raw_keys) {
            auto kdrip = cw.keys_ahead();
            for (int64_t b = 0; b < nblk; ++b) {
              // MLA's latent rows one page's, in order: the rows' addresses from one base.
              constexpr int64_t kLatentRow = 576;  // DeepSeek V2 / V3: c_kv 512 + k_pe 64
              const bf16_t* const* kr = cw.k.data() + b * 16;
              bool spaced = c.kv.k_row_stride() == kLatentRow && kr[0];
              for (int k = 1; k < 16 && spaced; ++k) spaced = kr[k] == kr[0] + k * kLatentRow;
              if (spaced)
                scores_lanes_rows<kLatentRow / 2>(qt, pairs, kr, c.p.scale, J.sc.data() + b * 256, kdrip);
              else
                scores_lanes_rows<0>(qt, pairs, kr, c.p.scale, J.sc.data() + b * 256, kdrip);
            }
          }
        }
        if (!raw_keys)
          for (int64_t b = 0; b < nblk; ++b)
            scores_lanes<kScaled>(qt, pairs, kpack + b * pairs * 16, c.p.scale, cw.ks.data() + b * 16,
                                  J.sc.data() + b * 256);
        // A lane's first step of a chunk starts from the partial the driver initialised.
        float* const lm = J.lmx.data() + blk * 16;
        float* const ls = J.lsum.data() + blk * 16;
        __m512 nw, corr, sum;
        lanes_softmax<kScaled>(J.sc.data(), nblk * 16, np, on, off, end, full, cw.vs.data(),
                               _mm512_mask_mov_ps(_mm512_loadu_ps(lm), fresh, ninf),
                               _mm512_mask_mov_ps(_mm512_loadu_ps(ls), fresh, _mm512_setzero_ps()), wr, nw, corr, sum);
        _mm512_storeu_ps(lm, nw);
        _mm512_storeu_ps(ls, sum);
        _mm512_storeu_ps(J.rs.data(), _mm512_mask_mov_ps(corr, fresh, _mm512_set1_ps(-1.0f)));
        weigh.template operator()<true>(ar, J.rs.data(), lo, hi, np);
        end_chunks(rows + i0, i1 - i0, row0, G, vd, nw, sum, ar);
        i0 = i1;
      }
    } else {
      // Four (row, head) rows by four blocks; past 64 elements a head's packed keys would not stay
      // in L1 over the rows, so eight rows by two blocks, the blocks taken two at a time.
      const bool wide = pairs > 64;
      for (int64_t i0 = 0; i0 < n; i0 += per) {
        const int64_t i1 = std::min(n, i0 + per), M = (i1 - i0) * G;
        int64_t gke = 0;
        for (int64_t i = i0; i < i1; ++i) gke = std::max(gke, rows[i].ke);
        const int64_t nblk = (gke - s0 + 15) / 16, np = (gke - s0 + 1) / 2;
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t g = 0; g < G; ++g) {
            const int64_t m = (i - i0) * G + g, rg = rows[i].row * G + g;
            J.qr[size_t(m)] = J.q.data() + rg * pairs;
            J.ar[size_t(m)] = J.acc.data() + rg * cols;
          }
        const uint32_t* const* qr = J.qr.data();

        // Scores.
        const int64_t bstep = wide ? 2 : 4, mstep = wide ? 8 : 4;
        for (int64_t s = 0; s < nsets && grouped; ++s) {
          const int64_t k0 = s * set_keys;
          with_kw([&](auto KW) {
            scores_grouped<KW, kScaled>(qd, pp16, kpack + s * set_size, G, c.p.scale, cw.ks.data() + k0,
                                        J.sc.data() + k0);
          });
        }
        for (int64_t b0 = 0; b0 < nblk && !grouped; b0 += bstep) {
          const uint32_t* kp = kpack + b0 * pairs * 16;
          const float* ks = cw.ks.data() + b0 * 16;
          with_count<4>(std::min(bstep, nblk - b0), [&](auto NB) {
            for (int64_t m = 0; m < M; m += mstep) {
              float* out = J.sc.data() + m * L + b0 * 16;
              if (wide)
                with_count<8>(std::min<int64_t>(8, M - m), [&](auto MR) {
                  scores_tile<MR, std::min<int>(NB, 2), kScaled>(qr + m, pairs, kp, pairs * 16, c.p.scale, ks, out);
                });
              else
                with_count<4>(std::min<int64_t>(4, M - m), [&](auto MR) {
                  scores_tile<MR, NB, kScaled>(qr + m, pairs, kp, pairs * 16, c.p.scale, ks, out);
                });
            }
          });
        }

        // The rows' softmax, their weights in bf16 pairs.
        if (G >= 4) {
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t m = (i - i0) * G;
            row_softmax_bf16<Bf16Ops, kScaled>(c.p, rows[i], s0, G, J.sc.data() + m * L, J.wb.data() + m * L,
                                               J.rs.data() + m, cw.vs.data(), w);
          }
        } else {
          rows_softmax_bf16<Bf16Ops, kScaled>(c.p, rows + i0, i1 - i0, s0, G, J.sc.data(), J.wb.data(),
                                              J.rs.data(), cw.vs.data(), J.cap.data());
        }
        weigh.template operator()<false>(J.ar.data(), J.rs.data(), 0, M, np);
      }
    }
    for (int64_t i = 0; i < n && !by_lanes; ++i) {
      if (!rows[i].last) continue;
      for (int64_t g = 0; g < G; ++g)
        std::memcpy(rows[i].part + 2 * G + g * vd, J.acc.data() + (rows[i].row * G + g) * cols, size_t(vd) * 4);
    }
    return by_lanes;
  }

  // The rows of a group by lanes (rows [0, n), lanes from their row less row0, G a row) whose key
  // chunk ends at this step, given the lanes' running maxima nw and sums `sum` and their weighted
  // sums at ar[lane]: a row's first chunk becomes its partial; a later one is merged into its
  // running partial st as merge_partials merges it (lane for lane the same operations, the
  // corrections of all lanes in one vector), so the driver neither copies nor merges it.
  static void end_chunks(const RowStep* rows, int64_t n, int64_t row0, int64_t G, int64_t vd, __m512 nw, __m512 sum,
                         float* const* ar) {
    alignas(64) std::array<float, 16> mx, sm, a, sa, ca, cb;
    __mmask16 merging = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!rows[i].last || !rows[i].st) continue;
      for (int64_t g = 0; g < G; ++g) {
        const size_t l = size_t((rows[i].row - row0) * G + g);
        a[l] = rows[i].st[g], sa[l] = rows[i].st[G + g];
        merging = __mmask16(merging | 1u << l);
      }
    }
    _mm512_store_ps(mx.data(), nw);
    _mm512_store_ps(sm.data(), sum);
    if (merging) {
      const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      const __m512 av = _mm512_mask_loadu_ps(ninf, merging, a.data());
      const __m512 m = _mm512_max_ps(av, nw);
      const __m512 cav = merge_corr(av, m), cbv = merge_corr(nw, m);
      _mm512_store_ps(ca.data(), cav);
      _mm512_store_ps(cb.data(), cbv);
      const __m512 sav = _mm512_mul_ps(_mm512_maskz_loadu_ps(merging, sa.data()), cav);
      _mm512_store_ps(sm.data(), _mm512_mask_mov_ps(sum, merging, _mm512_fmadd_ps(sum, cbv, sav)));
      _mm512_store_ps(mx.data(), _mm512_mask_mov_ps(nw, merging, m));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!rows[i].last) continue;
      float* const to = rows[i].st ? rows[i].st : rows[i].part;
      for (int64_t g = 0; g < G; ++g) {
        const size_t l = size_t((rows[i].row - row0) * G + g);
        to[g] = mx[l], to[G + g] = sm[l];
        if (rows[i].st)
          merge_values(to + 2 * G + g * vd, ar[l], _mm512_set1_ps(ca[l]), _mm512_set1_ps(cb[l]), vd);
        else
          std::memcpy(to + 2 * G + g * vd, ar[l], size_t(vd) * 4);
      }
    }
  }
};

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) {
  compact_attention_job<Bf16Ops>(c, j, parts, avx512::attention_job);
}

}  // namespace dpserve::kernels::avx512bf16

#pragma GCC diagnostic pop
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
