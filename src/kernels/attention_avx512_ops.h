// Internal: the AVX-512 attention primitives (16-wide dot products, V accumulation, exp) as one
// Ops struct for attention_impl.h. Included by attention_avx512.cpp and attention_avx512bf16.cpp
// inside their target regions and an anonymous namespace (after <immintrin.h>, <algorithm>,
// <limits> and kernels/simd_exp.h), so each file compiles its own copy for its ISA.
__mmask16 head_mask(int64_t d, int64_t i) { return d - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - i)) - 1); }

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
__m512 load16(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
[[maybe_unused]] __m512 load16(__mmask16 m, const bf16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
[[maybe_unused]] __m512 load16(__mmask16 m, const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

struct Avx512Ops {
  static float dot(const float* a, const float* b, int64_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < d; i += 16) {
      const __mmask16 m = head_mask(d, i);
      s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return hsum512(_mm512_add_ps(s0, s1));
  }
  // Sixteen keys at a time: one 16-lane product vector per key over the head dimension, then a
  // transposing tree that adds each vector's lanes into one lane of the result (45 shuffles and
  // adds for 16 scores, where a horizontal sum per key costs about as much for 2).
  template <class T>
  static float scores(const float* q, const T* k, int64_t ldk, int64_t n, int64_t d, float scale, float* out) {
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
      _mm512_mask_storeu_ps(out + j0, valid, r);
      mx = _mm512_mask_max_ps(mx, valid, mx, r);
    }
    return hmax(mx);
  }
  // scores() for NH heads at once, four keys at a time: each 16-lane piece of a key is loaded
  // once for all NH heads (scores() loads it once per head). Per head and key the lane sums
  // and the transposing tree are scores()'s: keys 4u..4u+3 give the tree's e[u], e[0] and e[1]
  // give f0, e[2] and e[3] f1, so every score has scores()'s bits.
  template <int NH, class T>
  static void scores_nh(const float* q, int64_t ldq, const T* k, int64_t ldk, int64_t n, int64_t d, float scale,
                        float* out, int64_t ldo, float* mxo) {
    __m512 mx[NH];
    for (int h = 0; h < NH; ++h) mx[h] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
      const int64_t nb = std::min<int64_t>(16, n - j0);
      __m512 ev[NH], f0[NH], f1[NH];
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        __m512 e[NH];
        if (4 * u >= nb) {  // no key left: scores() adds zero vectors here, which give zeros
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
        _mm512_mask_storeu_ps(out + h * ldo + j0, valid, r);
        mx[h] = _mm512_mask_max_ps(mx[h], valid, mx[h], r);
      }
    }
    for (int h = 0; h < NH; ++h) mxo[h] = hmax(mx[h]);
  }
  template <class T>
  static void scores_heads(const float* q, int64_t ldq, int64_t G, const T* k, int64_t ldk, int64_t n, int64_t d,
                           float scale, float* out, int64_t ldo, float* mx) {
    int64_t g = 0;
    for (; g + 4 <= G; g += 4) scores_nh<4, T>(q + g * ldq, ldq, k, ldk, n, d, scale, out + g * ldo, ldo, mx + g);
    switch (G - g) {
      case 3: scores_nh<3, T>(q + g * ldq, ldq, k, ldk, n, d, scale, out + g * ldo, ldo, mx + g); break;
      case 2: scores_nh<2, T>(q + g * ldq, ldq, k, ldk, n, d, scale, out + g * ldo, ldo, mx + g); break;
      case 1: mx[g] = scores(q + g * ldq, k, ldk, n, d, scale, out + g * ldo); break;
      default: break;
    }
  }
  // axpy_rows() for NH heads at once: each 16-wide piece of a value row is loaded once for all
  // NH heads; each head's sums run over j in order as in axpy_rows(), so the bits are the same.
  template <int NH, class T>
  static void axpy_nh(float* acc, int64_t lda, const T* v, int64_t ldv, const float* p, int64_t ldp, int64_t n,
                      int64_t d) {
    for (int64_t i = 0; i < d; i += 64) {
      __mmask16 m[4];
      __m512 a[NH][4];
      for (int c = 0; c < 4; ++c) m[c] = i + 16 * c < d ? head_mask(d, i + 16 * c) : __mmask16(0);
      for (int h = 0; h < NH; ++h)
        for (int c = 0; c < 4; ++c) a[h][c] = _mm512_maskz_loadu_ps(m[c], acc + h * lda + i + 16 * c);
      for (int64_t j = 0; j < n; ++j) {
        __m512 vv[4];
        for (int c = 0; c < 4; ++c) vv[c] = load16(m[c], v + j * ldv + i + 16 * c);
#pragma GCC unroll 4
        for (int h = 0; h < NH; ++h) {
          const __m512 pj = _mm512_set1_ps(p[h * ldp + j]);
          for (int c = 0; c < 4; ++c) a[h][c] = _mm512_fmadd_ps(pj, vv[c], a[h][c]);
        }
      }
      for (int h = 0; h < NH; ++h)
        for (int c = 0; c < 4; ++c) _mm512_mask_storeu_ps(acc + h * lda + i + 16 * c, m[c], a[h][c]);
    }
  }
  template <class T>
  static void axpy_heads(float* acc, int64_t lda, int64_t G, const T* v, int64_t ldv, const float* p, int64_t ldp,
                         int64_t n, int64_t d) {
    int64_t g = 0;
    for (; g + 4 <= G; g += 4) axpy_nh<4, T>(acc + g * lda, lda, v, ldv, p + g * ldp, ldp, n, d);
    switch (G - g) {
      case 3: axpy_nh<3, T>(acc + g * lda, lda, v, ldv, p + g * ldp, ldp, n, d); break;
      case 2: axpy_nh<2, T>(acc + g * lda, lda, v, ldv, p + g * ldp, ldp, n, d); break;
      case 1: axpy_rows(acc + g * lda, v, ldv, p + g * ldp, n, d); break;
      default: break;
    }
  }
  // Four 16-wide column chunks at once: four independent FMA chains instead of one (the sum
  // over j of each element keeps its order, so the bits are those of one chunk at a time).
  template <class T>
  static void axpy_rows(float* acc, const T* v, int64_t ldv, const float* p, int64_t n, int64_t d) {
    for (int64_t i = 0; i < d; i += 64) {
      __mmask16 m[4];
      __m512 a[4];
      for (int c = 0; c < 4; ++c) {
        m[c] = i + 16 * c < d ? head_mask(d, i + 16 * c) : __mmask16(0);
        a[c] = _mm512_maskz_loadu_ps(m[c], acc + i + 16 * c);
      }
      for (int64_t j = 0; j < n; ++j) {
        const __m512 pj = _mm512_set1_ps(p[j]);
        for (int c = 0; c < 4; ++c) a[c] = _mm512_fmadd_ps(pj, load16(m[c], v + j * ldv + i + 16 * c), a[c]);
      }
      for (int c = 0; c < 4; ++c) _mm512_mask_storeu_ps(acc + i + 16 * c, m[c], a[c]);
    }
  }
  static void scale(float* acc, float c, int64_t d) {
    const __m512 cv = _mm512_set1_ps(c);
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = head_mask(d, i);
      _mm512_mask_storeu_ps(acc + i, m, _mm512_mul_ps(cv, _mm512_maskz_loadu_ps(m, acc + i)));
    }
  }
  static float mul_max(float* x, const float* s, int64_t n) {
    __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, s + i));
      _mm512_mask_storeu_ps(x + i, m, p);
      mx = _mm512_mask_max_ps(mx, m, mx, p);
    }
    return hmax(mx);
  }
  static void mul(float* out, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
  }
  static float exp_sub_sum(float* x, int64_t n, float shift) {
    __m512 sum = _mm512_setzero_ps();
    const __m512 s = _mm512_set1_ps(shift);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = head_mask(n, i);
      const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
      _mm512_mask_storeu_ps(x + i, m, e);
      sum = _mm512_add_ps(sum, e);
    }
    return hsum512(sum);
  }
};
