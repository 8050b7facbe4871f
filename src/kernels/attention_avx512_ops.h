// Internal: the AVX-512 attention primitives (scores as a small matrix product over transposed
// keys, or key by key for fp32 keys; V accumulation; exp) as one Ops struct for
// attention_impl.h. Included by attention_avx512.cpp and attention_avx512bf16.cpp inside their
// target regions and an anonymous namespace (after <immintrin.h>, <algorithm>, <cstdint>,
// <limits>, <type_traits>, <vector> and kernels/simd_exp.h), so each compiles its own copy.
#include "kernels/attention_packed_keys.h"

__mmask16 head_mask(int64_t d, int64_t i) { return d - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - i)) - 1); }

// Stores 16 floats under mask m. A masked store does not forward its data to a load that reads it
// back soon after, which waits until the store has left the core: the scores, weights and sums
// stored here are read again within the step, so a full vector takes the plain store.
[[gnu::always_inline]] inline void store16(float* p, __mmask16 m, __m512 v) {
  if (m == __mmask16(0xffff)) _mm512_storeu_ps(p, v);
  else _mm512_mask_storeu_ps(p, m, v);
}

// The largest lane, halving in registers. (GCC 12 warns, wrongly, about _mm512_reduce_max_ps once
// it is inlined into the loops below.) A max is exact, so any order gives the same value (up to
// the sign of a zero, which no later operation tells apart).
float hmax(__m512 v) {
  const __m256 a = _mm256_max_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_max_ps(b, _mm_movehl_ps(b, b));
  b = _mm_max_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// Up to sixteen cached elements (lanes of m) widened to fp32; lanes outside m are 0.
[[maybe_unused]] __m512 load16(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
[[maybe_unused]] __m512 load16(__mmask16 m, const bf16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
[[maybe_unused]] __m512 load16(__mmask16 m, const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
// fp8 codes through fp16, whose conversion keeps subnormals: an E5M2 code is the top byte of
// the fp16 of the same value; an E4M3 code's exponent and mantissa, placed in an fp16's, give its
// value times 2^-8 (normals and subnormals alike), which one exact multiply undoes.
[[maybe_unused]] __m256i fp8_as_f16(__m128i b, const fp8_e5m2_t*) { return _mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 8); }
[[maybe_unused]] __m256i fp8_as_f16(__m128i b, const fp8_e4m3_t*) {
  const __m256i w = _mm256_cvtepu8_epi16(b);
  return _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x7f)), 7),
                         _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x80)), 8));
}
template <class F8>
  requires(std::is_same_v<F8, fp8_e4m3_t> || std::is_same_v<F8, fp8_e5m2_t>)
__m512 load16(__mmask16 m, const F8* p) {
  const __m512 f = _mm512_cvtph_ps(fp8_as_f16(_mm_maskz_loadu_epi8(m, p), p));
  if constexpr (std::is_same_v<F8, fp8_e4m3_t>) return _mm512_mul_ps(f, _mm512_set1_ps(256.0f));
  return f;
}

// r[i] (16 lanes of 32 bits) becomes column i of the 16 x 16 matrix the rows held.
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4g + c]: rows 4g..4g+3, columns c, c + 4, c + 8, c + 12 in its four 128-bit lanes.
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i w0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);       // rows 0-7: columns c, c + 8
    const __m512i w1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);       // columns c + 4, c + 12
    const __m512i w2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);  // rows 8-15
    const __m512i w3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_i32x4(w0, w2, 0x88);
    r[c + 8] = _mm512_shuffle_i32x4(w0, w2, 0xdd);
    r[c + 4] = _mm512_shuffle_i32x4(w1, w3, 0x88);
    r[c + 12] = _mm512_shuffle_i32x4(w1, w3, 0xdd);
  }
}

// Keys [0, nb) (nb <= 16) transposed to fp32: kt[e * 16 + j] is element e of key j (zero for
// keys past nb). Each element is widened exactly as load16 widens it.
template <bool kDrip = false, class T>
void pack_keys(const T* k, int64_t ldk, int64_t nb, int64_t d, float* kt) {
  for (int64_t c = 0; c < d; c += 16) {
    const __mmask16 m = head_mask(d, c);
    __m512i r[16];
    for (int j = 0; j < 16; ++j) {
      if (c == 0) drip_row<kDrip, T>();
      r[j] = _mm512_castps_si512(j < nb ? load16(m, k + j * ldk + c) : _mm512_setzero_ps());
    }
    transpose16(r);
    const int64_t ne = std::min<int64_t>(16, d - c);
    for (int64_t e = 0; e < ne; ++e) _mm512_store_si512(kt + (c + e) * 16, r[e]);
  }
}

// Head g's scores of 16 keys, a0[g] + a1[g] (its two chains) times scale, then times the keys'
// scales ks[j] if kScaled (int8 / fp8 rows: the product attention_impl.h's step_scores would take
// after, in the same order), to out + g * ldo (the first nb), and its running max mx[g] raised to
// their largest (no mx: no max).
template <int NG, bool kScaled = false>
void store_scores(const __m512* a0, const __m512* a1, int64_t nb, float scale, float* out, int64_t ldo, float* mx,
                  const float* ks = nullptr) {
  const __mmask16 valid = head_mask(nb, 0);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 kv;
  if constexpr (kScaled) kv = _mm512_maskz_loadu_ps(valid, ks);
  for (int g = 0; g < NG; ++g) {
    __m512 r = _mm512_mul_ps(_mm512_add_ps(a0[g], a1[g]), _mm512_set1_ps(scale));
    if constexpr (kScaled) r = _mm512_mul_ps(r, kv);
    store16(out + g * ldo, valid, r);
    if (mx) mx[g] = std::max(mx[g], hmax(_mm512_mask_max_ps(ninf, valid, r, r)));
  }
}

// Scores of NG heads against 16 packed keys. Lane j of head g is (even elements) + (odd
// elements), each a sum of q[e] * k_j[e] over e = 0, 2, 4, ... (1, 3, 5, ...) in order: two
// chains per head hide the FMA's latency behind the other heads'. The sum depends only on the
// head's query and the key, not on NG, the other keys or the page.
template <int NG>
void scores_packed(const float* q, int64_t ldq, const float* kt, int64_t d, int64_t nb, float scale, float* out,
                   int64_t ldo, float* mx) {
  __m512 a0[NG], a1[NG];
  for (int g = 0; g < NG; ++g) a0[g] = a1[g] = _mm512_setzero_ps();
  int64_t e = 0;
  for (; e + 2 <= d; e += 2) {
    const __m512 k0 = _mm512_load_ps(kt + e * 16), k1 = _mm512_load_ps(kt + (e + 1) * 16);
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) {
      a0[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * ldq + e]), k0, a0[g]);
      a1[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * ldq + e + 1]), k1, a1[g]);
    }
  }
  if (e < d) {
    const __m512 k0 = _mm512_load_ps(kt + e * 16);
    for (int g = 0; g < NG; ++g) a0[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * ldq + e]), k0, a0[g]);
  }
  store_scores<NG>(a0, a1, nb, scale, out, ldo, mx);
}

// scores_packed for NB blocks of 16 packed keys at once (block b at kt[b], its first nb[b] keys,
// its scores to out[b], times its keys' scales ks[b] if kScaled): the same two chains a head and
// block, side by side, so a head's scores do not wait on the FMA's latency when the heads are few.
template <int NG, int NB, bool kScaled>
void scores_packed_multi(const float* q, int64_t ldq, const float* const* kt, int64_t d, const int64_t* nb,
                         float scale, float* const* out, int64_t ldo, const float* const* ks) {
  __m512 a0[NB][NG], a1[NB][NG];
  for (int b = 0; b < NB; ++b)
    for (int g = 0; g < NG; ++g) a0[b][g] = a1[b][g] = _mm512_setzero_ps();
  int64_t e = 0;
  for (; e + 2 <= d; e += 2) {
    __m512 q0[NG], q1[NG];
    for (int g = 0; g < NG; ++g) q0[g] = _mm512_set1_ps(q[g * ldq + e]), q1[g] = _mm512_set1_ps(q[g * ldq + e + 1]);
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
      const __m512 k0 = _mm512_load_ps(kt[b] + e * 16), k1 = _mm512_load_ps(kt[b] + (e + 1) * 16);
      for (int g = 0; g < NG; ++g) {
        a0[b][g] = _mm512_fmadd_ps(q0[g], k0, a0[b][g]);
        a1[b][g] = _mm512_fmadd_ps(q1[g], k1, a1[b][g]);
      }
    }
  }
  if (e < d)
    for (int b = 0; b < NB; ++b) {
      const __m512 k0 = _mm512_load_ps(kt[b] + e * 16);
      for (int g = 0; g < NG; ++g) a0[b][g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * ldq + e]), k0, a0[b][g]);
    }
  for (int b = 0; b < NB; ++b)
    store_scores<NG, kScaled>(a0[b], a1[b], nb[b], scale, out[b], ldo, nullptr, kScaled ? ks[b] : nullptr);
}

struct Avx512Ops {
  // The next step's rows are fetched as each page's rows are read (attention_impl.h, PageDrip):
  // decode from DRAM at 32k keys read the cache 1.35-1.57x faster than with a page's prefetch at its
  // start (an AMD EPYC Zen 5 with the level forced; docs/benchmarks.md).
  static constexpr bool kPageDrip = true;
  static void begin_job(int64_t /*rows*/) { packed_keys.forget(); }

  // fp32 keys, key by key: one 16-lane product vector per key, folded by a transposing tree.
  // Sixteen keys at a time: one 16-lane product vector per key over the head dimension, then a
  // transposing tree that adds each vector's lanes into one lane of the result (45 shuffles and
  // adds for 16 scores, where a horizontal sum per key costs about as much for 2).
  template <class T>
  static float scores_tree(const float* q, const T* k, int64_t ldk, int64_t n, int64_t d, float scale, float* out) {
    __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
      const int64_t nb = std::min<int64_t>(16, n - j0);
      __m512 a[16];
      for (int j = 0; j < 16; ++j) a[j] = _mm512_setzero_ps();
      const T* kb = k + j0 * ldk;
      for (int64_t i = 0; i < d; i += 16) {
        const __mmask16 m = head_mask(d, i);
        const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
        // Unrolled over all 16 so a[] stays in registers; keys past n load nothing.
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j)
          a[j] = _mm512_fmadd_ps(qv, load16(j < nb ? m : __mmask16(0), kb + j * ldk + i), a[j]);
      }
      __m512 c[8], e[4];
      for (int p = 0; p < 8; ++p)
        c[p] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * p], a[2 * p + 1]), _mm512_unpackhi_ps(a[2 * p], a[2 * p + 1]));
      for (int p = 0; p < 4; ++p)
        e[p] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * p], c[2 * p + 1], 0x44), _mm512_shuffle_ps(c[2 * p], c[2 * p + 1], 0xEE));
      const __m512 f0 = _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], 0x44), _mm512_shuffle_f32x4(e[0], e[1], 0xEE));
      const __m512 f1 = _mm512_add_ps(_mm512_shuffle_f32x4(e[2], e[3], 0x44), _mm512_shuffle_f32x4(e[2], e[3], 0xEE));
      const __m512 r = _mm512_mul_ps(
          _mm512_add_ps(_mm512_shuffle_f32x4(f0, f1, 0x88), _mm512_shuffle_f32x4(f0, f1, 0xDD)), _mm512_set1_ps(scale));
      const __mmask16 valid = head_mask(nb, 0);
      store16(out + j0, valid, r);
      mx = _mm512_mask_max_ps(mx, valid, mx, r);
    }
    return hmax(mx);
  }
  // scores_tree() for NH heads at once, four keys at a time: each 16-lane piece of a key is loaded
  // once for all NH heads (scores_tree() loads it once per head). Per head and key the lane sums
  // and the transposing tree are scores_tree()'s: keys 4u..4u+3 give the tree's e[u], e[0] and e[1]
  // give f0, e[2] and e[3] f1, so every score has scores_tree()'s bits.
  template <int NH, class T>
  static void scores_tree_nh(const float* q, int64_t ldq, const T* k, int64_t ldk, int64_t n, int64_t d, float scale,
                        float* out, int64_t ldo, float* mxo) {
    __m512 mx[NH];
    for (int h = 0; h < NH; ++h) mx[h] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
      const int64_t nb = std::min<int64_t>(16, n - j0);
      __m512 ev[NH], f0[NH], f1[NH];
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        __m512 e[NH];
        if (4 * u >= nb) {  // no key left: scores_tree() adds zero vectors here, which give zeros
          for (int h = 0; h < NH; ++h) e[h] = _mm512_setzero_ps();
        } else {
          __m512 a[NH][4];
          for (int h = 0; h < NH; ++h)
            for (int j = 0; j < 4; ++j) a[h][j] = _mm512_setzero_ps();
          const T* kb = k + (j0 + 4 * u) * ldk;
          for (int64_t i = 0; i < d; i += 16) {
            const __mmask16 m = head_mask(d, i);
            __m512 qv[NH];
#pragma GCC unroll 4
            for (int h = 0; h < NH; ++h) qv[h] = _mm512_maskz_loadu_ps(m, q + h * ldq + i);
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
              const __m512 kv = load16(4 * u + j < nb ? m : __mmask16(0), kb + j * ldk + i);
#pragma GCC unroll 4
              for (int h = 0; h < NH; ++h) a[h][j] = _mm512_fmadd_ps(qv[h], kv, a[h][j]);
            }
          }
          for (int h = 0; h < NH; ++h) {
            const __m512 c0 = _mm512_add_ps(_mm512_unpacklo_ps(a[h][0], a[h][1]), _mm512_unpackhi_ps(a[h][0], a[h][1]));
            const __m512 c1 = _mm512_add_ps(_mm512_unpacklo_ps(a[h][2], a[h][3]), _mm512_unpackhi_ps(a[h][2], a[h][3]));
            e[h] = _mm512_add_ps(_mm512_shuffle_ps(c0, c1, 0x44), _mm512_shuffle_ps(c0, c1, 0xEE));
          }
        }
        for (int h = 0; h < NH; ++h) {
          if (u % 2 == 0) {
            ev[h] = e[h];
          } else {
            const __m512 f = _mm512_add_ps(_mm512_shuffle_f32x4(ev[h], e[h], 0x44), _mm512_shuffle_f32x4(ev[h], e[h], 0xEE));
            (u == 1 ? f0 : f1)[h] = f;
          }
        }
      }
      const __mmask16 valid = head_mask(nb, 0);
      for (int h = 0; h < NH; ++h) {
        const __m512 r = _mm512_mul_ps(
            _mm512_add_ps(_mm512_shuffle_f32x4(f0[h], f1[h], 0x88), _mm512_shuffle_f32x4(f0[h], f1[h], 0xDD)),
            _mm512_set1_ps(scale));
        store16(out + h * ldo + j0, valid, r);
        mx[h] = _mm512_mask_max_ps(mx[h], valid, mx[h], r);
      }
    }
    for (int h = 0; h < NH; ++h) mxo[h] = hmax(mx[h]);
  }
  // Scores of G query heads against n keys. fp32 keys: scores_tree four heads at a time (packing
  // them would add a second pass over keys decode reads from memory only once). bf16 / int8 / fp8
  // keys: 16 at a time as a small matrix product: the keys are widened and transposed once (16
  // x 16 blocks of 32-bit lanes) and each head's query elements multiply them 16 keys per FMA,
  // where key by key each element would be widened for every four heads and every 16 keys
  // folded in a tree. Every score has the bits scores_packed / scores_tree give it, whatever G
  // or n.
  template <class T>
  static void scores_heads(const float* q, int64_t ldq, int64_t G, const T* k, int64_t ldk, int64_t n, int64_t d,
                           float scale, float* out, int64_t ldo, float* mx) {
    if constexpr (std::is_same_v<T, float>) {
      // The trees keep their maxima in registers, one horizontal max per call: kept, into a
      // scratch row when the caller takes the step's max itself.
      thread_local std::vector<float> unused;
      if (!mx) {
        if (int64_t(unused.size()) < G) unused.resize(size_t(G));
        mx = unused.data();
      }
      head_groups<4>(G, [&](auto NH, int64_t g) {
        if constexpr (NH == 1) mx[g] = scores_tree(q + g * ldq, k, ldk, n, d, scale, out + g * ldo);
        else scores_tree_nh<NH, T>(q + g * ldq, ldq, k, ldk, n, d, scale, out + g * ldo, ldo, mx + g);
      });
      return;
    }
    scores_packed_blocks<8>(
        k, ldk, n, d, G, mx,
        [&](const T* kj, int64_t nb, float* kb) {
          with_drip([&](auto D) { pack_keys<D.value>(kj, ldk, nb, d, kb); });
        },
        [&](auto NG, int64_t g, const float* kb, int64_t nb, int64_t j0) {
          scores_packed<NG>(q + g * ldq, ldq, kb, d, nb, scale, out + g * ldo + j0, ldo, mx ? mx + g : nullptr);
        });
  }
  // A step's scores (attention_impl.h, scores_runs) over bf16 / int8 / fp8 keys. One or two heads
  // a KV head (MHA models, DeepSeek's decompressed MLA) take the blocks of all the step's pages
  // together, up to four at a time (scores_packed_multi): a page's block alone left such a
  // head's two chains waiting on the FMA's latency. More heads fill the FMAs anyway: their steps
  // are left to step_scores, page by page (false). Each score has scores_heads' bits.
  template <class T>
    requires(!std::is_same_v<T, float>)
  static bool scores_runs(const float* q, int64_t ldq, int64_t G, const PageRun<T>* runs, const float* const* scales,
                          int64_t n_runs, int64_t d, float scale, float* out, int64_t ldo) {
    if (G > 2) return false;
    // Blocks gathered four at a time (a step over pages of fewer keys has more, smaller blocks);
    // the packings found in this call stay put until the next.
    std::array<const float*, 4> kt;
    std::array<int64_t, 4> nb;
    std::array<float*, 4> o;
    std::array<const float*, 4> ks;
    int64_t nblk = 0;
    const auto flush = [&] {
      with_count<4>(nblk, [&](auto NB) {
        const auto run = [&](auto NG, auto kScaled) {
          scores_packed_multi<NG, NB, kScaled>(q, ldq, kt.data(), d, nb.data(), scale, o.data(), ldo, ks.data());
        };
        using One = std::integral_constant<int, 1>;
        using Two = std::integral_constant<int, 2>;
        if (scales) G == 1 ? run(One{}, std::true_type{}) : run(Two{}, std::true_type{});
        else G == 1 ? run(One{}, std::false_type{}) : run(Two{}, std::false_type{});
      });
      nblk = 0;
    };
    step_key_blocks<Avx512Ops>(
        runs, n_runs, d,
        [&](const T* k, int64_t ldk, int64_t n, float* p) {
          with_drip([&](auto D) { pack_keys<D.value>(k, ldk, n, d, p); });
        },
        [&](int64_t r, int64_t j0, int64_t n, const float* p) {
          kt[size_t(nblk)] = p, nb[size_t(nblk)] = n, o[size_t(nblk)] = out + runs[r].off + j0;
          ks[size_t(nblk)] = scales ? scales[r] + j0 : nullptr;
          if (++nblk == 4) flush();
        });
    if (nblk) flush();
    return true;
  }
  // A step's weighted values (attention_impl.h, axpy_runs) over bf16 / int8 / fp8 values. One or
  // two heads a KV head keep up to 128 elements of each head's sums in registers over all the
  // step's pages (axpy_runs_nh): page by page each head's sums were loaded and stored again for
  // every 16 keys, in chains of four. More heads' steps are left to step_values, page by page
  // (false). Each sum runs over the keys in order, so the bits are page_axpy's; int8 / fp8
  // weights are first multiplied by their rows' scales, as step_values multiplies them.
  template <class T>
    requires(!std::is_same_v<T, float>)
  static bool axpy_runs(float* acc, int64_t lda, int64_t G, const PageRun<T>* runs, const float* const* scales,
                        int64_t n_runs, const float* p, int64_t ldp, int64_t d) {
    if (G > 2) return false;
    bool ahead = false;  // the row fetches the next step (decode; a prefill job's last row)
    for (int64_t r = 0; r < n_runs; ++r) ahead = ahead || runs[r].ahead_bytes > 0;
    for (int64_t i = 0; i < d; i += 128) {
      const auto pass = [&](auto NG, auto NC) {
        // The first pass fetches the runs' next step as it reads them, if the row fetches at all.
        if (i == 0 && ahead)
          scales ? axpy_runs_nh<NG, NC, true, true, T>(acc, lda, runs, scales, n_runs, p, ldp, i, d)
                 : axpy_runs_nh<NG, NC, false, true, T>(acc, lda, runs, scales, n_runs, p, ldp, i, d);
        else
          scales ? axpy_runs_nh<NG, NC, true, false, T>(acc, lda, runs, scales, n_runs, p, ldp, i, d)
                 : axpy_runs_nh<NG, NC, false, false, T>(acc, lda, runs, scales, n_runs, p, ldp, i, d);
      };
      const bool wide = d - i > 64;
      if (G == 1) wide ? pass(std::integral_constant<int, 1>{}, std::integral_constant<int, 8>{})
                       : pass(std::integral_constant<int, 1>{}, std::integral_constant<int, 4>{});
      else wide ? pass(std::integral_constant<int, 2>{}, std::integral_constant<int, 8>{})
                : pass(std::integral_constant<int, 2>{}, std::integral_constant<int, 4>{});
    }
    return true;
  }
  // Elements [i, min(i + 16 NC, d)) of NG heads' sums (head g's at acc + g * lda) plus the step's
  // values weighed by p (head g's weight of run r's key j at p + g * ldp + off + j, times the row's
  // scale if kScaled), the runs in turn; kFetch: fetch each run's next step as it is read (PageDrip).
  template <int NG, int NC, bool kScaled, bool kFetch, class T>
  static void axpy_runs_nh(float* acc, int64_t lda, const PageRun<T>* runs, const float* const* scales,
                           int64_t n_runs, const float* p, int64_t ldp, int64_t i, int64_t d) {
    __mmask16 m[NC];
    __m512 a[NG][NC];
    acc += i;
    for (int c = 0; c < NC; ++c) m[c] = i + 16 * c < d ? head_mask(d, i + 16 * c) : __mmask16(0);
    for (int g = 0; g < NG; ++g)
      for (int c = 0; c < NC; ++c) a[g][c] = _mm512_maskz_loadu_ps(m[c], acc + g * lda + 16 * c);
    for (int64_t r = 0; r < n_runs; ++r) {
      const PageRun<T>& u = runs[r];
      if constexpr (kFetch) page_ahead<Avx512Ops, T>(u);
      for (int64_t j = 0; j < u.n; ++j) {
        drip_row<kFetch, T>();
        __m512 pj[NG];
        for (int g = 0; g < NG; ++g)
          pj[g] = _mm512_set1_ps(kScaled ? p[g * ldp + u.off + j] * scales[r][j] : p[g * ldp + u.off + j]);
        const T* v = u.rows + j * u.ld + i;
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) {
          const __m512 vv = load16(m[c], v + 16 * c);
          for (int g = 0; g < NG; ++g) a[g][c] = _mm512_fmadd_ps(pj[g], vv, a[g][c]);
        }
      }
    }
    if constexpr (kFetch) pages_ahead_done<Avx512Ops, T>();
    for (int g = 0; g < NG; ++g)
      for (int c = 0; c < NC; ++c) store16(acc + g * lda + 16 * c, m[c], a[g][c]);
  }
  // bf16 / int8 / fp8 values: axpy_rows() for up to 8 heads at once, 32 elements of each head's sums in
  // registers at a time, so each 16-wide piece is widened once for all NH heads; each head's
  // sums run over j in order as in axpy_rows(), so the bits are the same.
  template <int NH, class T, bool kDrip = false>
  static void axpy_nh(float* acc, int64_t lda, const T* v, int64_t ldv, const float* p, int64_t ldp, int64_t n,
                      int64_t d) {
    for (int64_t i = 0; i < d; i += 32) {
      const __mmask16 m0 = head_mask(d, i), m1 = i + 16 < d ? head_mask(d, i + 16) : __mmask16(0);
      __m512 a[NH][2];
      for (int h = 0; h < NH; ++h) {
        a[h][0] = _mm512_maskz_loadu_ps(m0, acc + h * lda + i);
        a[h][1] = _mm512_maskz_loadu_ps(m1, acc + h * lda + i + 16);
      }
      for (int64_t j = 0; j < n; ++j) {
        drip_row<kDrip, T>();
        const __m512 v0 = load16(m0, v + j * ldv + i), v1 = load16(m1, v + j * ldv + i + 16);
#pragma GCC unroll 8
        for (int h = 0; h < NH; ++h) {
          const __m512 pj = _mm512_set1_ps(p[h * ldp + j]);
          a[h][0] = _mm512_fmadd_ps(pj, v0, a[h][0]);
          a[h][1] = _mm512_fmadd_ps(pj, v1, a[h][1]);
        }
      }
      for (int h = 0; h < NH; ++h) {
        store16(acc + h * lda + i, m0, a[h][0]);
        store16(acc + h * lda + i + 16, m1, a[h][1]);
      }
    }
  }
  // fp32 values: axpy_rows() for up to 4 heads at once, 64 elements of each head's sums in
  // registers (the value rows read in one pass); each 16-wide piece loaded once for all NH heads; each head's sums run over j in order as in axpy_rows(), so the bits are the same.
  template <int NH, class T, bool kDrip = false>
  static void axpy_wide_nh(float* acc, int64_t lda, const T* v, int64_t ldv, const float* p, int64_t ldp, int64_t n,
                      int64_t d) {
    for (int64_t i = 0; i < d; i += 64) {
      __mmask16 m[4];
      __m512 a[NH][4];
      for (int c = 0; c < 4; ++c) m[c] = i + 16 * c < d ? head_mask(d, i + 16 * c) : __mmask16(0);
      for (int h = 0; h < NH; ++h)
        for (int c = 0; c < 4; ++c) a[h][c] = _mm512_maskz_loadu_ps(m[c], acc + h * lda + i + 16 * c);
      for (int64_t j = 0; j < n; ++j) {
        drip_row<kDrip, T>();
        __m512 vv[4];
        for (int c = 0; c < 4; ++c) vv[c] = load16(m[c], v + j * ldv + i + 16 * c);
#pragma GCC unroll 4
        for (int h = 0; h < NH; ++h) {
          const __m512 pj = _mm512_set1_ps(p[h * ldp + j]);
          for (int c = 0; c < 4; ++c) a[h][c] = _mm512_fmadd_ps(pj, vv[c], a[h][c]);
        }
      }
      for (int h = 0; h < NH; ++h)
        for (int c = 0; c < 4; ++c) store16(acc + h * lda + i + 16 * c, m[c], a[h][c]);
    }
  }
  template <class T>
  static void axpy_heads(float* acc, int64_t lda, int64_t G, const T* v, int64_t ldv, const float* p, int64_t ldp,
                         int64_t n, int64_t d) {
    // fp32 values: four heads of 64 elements; bf16 / int8 / fp8: eight heads of 32 (above).
    constexpr int kMax = std::is_same_v<T, float> ? 4 : 8;
    with_drip([&](auto D) {
      head_groups<kMax>(G, [&](auto NH, int64_t g) {
        if constexpr (NH == 1) axpy_rows<D.value>(acc + g * lda, v, ldv, p + g * ldp, n, d);
        else if constexpr (std::is_same_v<T, float>)
          axpy_wide_nh<NH, T, D.value>(acc + g * lda, lda, v, ldv, p + g * ldp, ldp, n, d);
        else axpy_nh<NH, T, D.value>(acc + g * lda, lda, v, ldv, p + g * ldp, ldp, n, d);
      });
    });
  }
  // Four 16-wide column chunks at once: four independent FMA chains instead of one (the sum
  // over j of each element keeps its order, so the bits are those of one chunk at a time).
  template <bool kDrip = false, class T>
  static void axpy_rows(float* acc, const T* v, int64_t ldv, const float* p, int64_t n, int64_t d) {
    for (int64_t i = 0; i < d; i += 64) {
      __mmask16 m[4];
      __m512 a[4];
      for (int c = 0; c < 4; ++c) {
        m[c] = i + 16 * c < d ? head_mask(d, i + 16 * c) : __mmask16(0);
        a[c] = _mm512_maskz_loadu_ps(m[c], acc + i + 16 * c);
      }
      for (int64_t j = 0; j < n; ++j) {
        drip_row<kDrip, T>();
        const __m512 pj = _mm512_set1_ps(p[j]);
        for (int c = 0; c < 4; ++c) a[c] = _mm512_fmadd_ps(pj, load16(m[c], v + j * ldv + i + 16 * c), a[c]);
      }
      for (int c = 0; c < 4; ++c) store16(acc + i + 16 * c, m[c], a[c]);
    }
  }
  static void scale(float* acc, float c, int64_t d) {
    const __m512 cv = _mm512_set1_ps(c);
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = head_mask(d, i);
      store16(acc + i, m, _mm512_mul_ps(cv, _mm512_maskz_loadu_ps(m, acc + i)));
    }
  }
  static float mul_max(float* x, const float* s, int64_t n) {
    __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, s + i));
      store16(x + i, m, p);
      mx = _mm512_mask_max_ps(mx, m, mx, p);
    }
    return hmax(mx);
  }
  static void mul(float* out, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      store16(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
  }
  // The largest of x[0, n): the step's max in one pass (attention_impl.h, partial_step), where
  // the scores' own maxima would take a horizontal max per head for every page.
  static float max_of(const float* x, int64_t n) {
    __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, x + i));
    }
    return hmax(mx);
  }
  // G rows at once, 16 lanes of each row in turn: each row's sum takes its pieces in order, as
  // the row alone (exp_sub_sum, G = 1) would, so the bits are the same, and the rows'
  // exponentials are independent work for the core to overlap, where row by row each waited on
  // the one before.
  static void exp_sub_sum_heads(float* x, int64_t ldx, int64_t G, int64_t n, const float* shift, float* sum) {
    constexpr int64_t kMaxRows = 8;
    for (int64_t g0 = 0; g0 < G; g0 += kMaxRows) {
      const int64_t R = std::min(kMaxRows, G - g0);
      __m512 acc[kMaxRows], sh[kMaxRows];
      for (int64_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps(), sh[r] = _mm512_set1_ps(shift[g0 + r]);
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = head_mask(n, i);
        for (int64_t r = 0; r < R; ++r) {
          float* xr = x + (g0 + r) * ldx + i;
          const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr), sh[r])));
          store16(xr, m, e);
          acc[r] = _mm512_add_ps(acc[r], e);
        }
      }
      for (int64_t r = 0; r < R; ++r) sum[g0 + r] = hsum512(acc[r]);
    }
  }
  static float exp_sub_sum(float* x, int64_t n, float shift) {
    float sum;
    exp_sub_sum_heads(x, n, 1, n, &shift, &sum);
    return sum;
  }
  static void softcap(float* x, int64_t n, float cap) { vec_softcap_isa(KernelIsa::Avx512, x, n, cap); }
};
