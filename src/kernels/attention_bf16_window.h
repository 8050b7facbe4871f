// Internal: a step of the bf16 attention levels (attention_avx512bf16.cpp, attention_amx.cpp)
// taken by all of a job's rows at once (attention_impl.h, RowStep): the step's window of kStepKeys
// keys as columns from its first key, its keys and values packed in bf16 pairs once for every row,
// and each row's softmax over its own columns into bf16 weights, zero wherever the row does not
// look. Included inside each file's target region and anonymous namespace, after
// attention_avx512_ops.h and attention_bf16_pairs.h.
#pragma once

constexpr int64_t L = kStepKeys;  // keys (columns) of a step's window
static_assert(L == 64, "a window is four blocks of 16 keys");

// n elements of b from a 64-byte boundary (the packers store whole aligned vectors).
uint32_t* aligned64(std::vector<uint32_t>& b, int64_t n) {
  if (int64_t(b.size()) < n + 16) b.resize(size_t(n + 16));
  return b.data() + (16 - (reinterpret_cast<uintptr_t>(b.data()) / 4) % 16) % 16;
}

// Lanes of columns [off, off + n) among the 16 from c.
__mmask16 cols_mask(int64_t off, int64_t n, int64_t c) {
  const int64_t lo = std::clamp<int64_t>(off - c, 0, 16), hi = std::clamp<int64_t>(off + n - c, 0, 16);
  return __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// The window of the steps of n rows: its first key s0 (a multiple of L), the rows' least first key
// kb, greatest end ke, and the farthest key k_end to prefetch up to.
struct WindowSpan {
  int64_t s0, kb, ke, k_end;
};
inline WindowSpan window_span(const RowStep* rows, int64_t n) {
  WindowSpan w{rows[0].kb / L * L, rows[0].kb, rows[0].ke, 0};
  for (int64_t i = 0; i < n; ++i)
    w.kb = std::min(w.kb, rows[i].kb), w.ke = std::max(w.ke, rows[i].ke), w.k_end = std::max(w.k_end, rows[i].k_end);
  return w;
}

// The bf16 pairs of the G query heads from head h0 of each row not yet converted in this job (row
// r's at q + r * G * pp, pp pairs a head; converted[r] marks them), then converted(r) for each.
template <class Converted = void (*)(int64_t)>
inline void convert_queries(const RowStep* rows, int64_t n, int64_t h0, int64_t hd, int64_t G,
                            std::vector<uint8_t>& converted, uint32_t* q, int64_t pp,
                            Converted&& then = [](int64_t) {}) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rows[i].row;
    if (converted[size_t(r)]) continue;
    converted[size_t(r)] = 1;
    pack_bf16_pairs(rows[i].q + h0 * hd, hd, G, hd, q + r * G * pp, pp);
    then(r);
  }
}

// A window's keys and values by column (key - s0), null where no row of the step looks, and
// int8 / fp8 rows' scales by column; and what the next step reads at its pages (the byte ranges
// its page runs prefetch, PageRun::ahead), fetched a cache line at a time as this step loads its own
// (Drip).
template <class T>
struct WindowCols {
  struct Ahead {
    const char* k;
    const char* v;
    int64_t k_bytes, v_bytes;
  };
  // The next step's keys (or values), one cache line a call of next(), range after range: called once
  // for each line-sized load of this step's keys (values), the fetches spread evenly over the step.
  // Issued a page's rows at a time (64 lines of a 16-key page, as the step reached each page),
  // they overflowed the core's miss buffers and were mostly lost: decode from DRAM at 32k keys read
  // the cache at a third of the bandwidth, as fast as with no prefetch at all (docs/benchmarks.md).
  struct Drip {
    const Ahead* r;
    const Ahead* rend;
    bool values;
    const char* cur = nullptr;
    const char* end = nullptr;
    [[gnu::always_inline]] void next() {
      if (cur >= end) {
        if (r == rend) return;
        const char* p = values ? r->v : r->k;
        end = p + (values ? r->v_bytes : r->k_bytes);
        cur = p - reinterpret_cast<uintptr_t>(p) % 64;
        ++r;
      }
      prefetch_line(cur);
      cur += 64;
    }
  };
  // Left uninitialised (a step fills what it reads; zeroing them cost decode a few per cent): k
  // and v are set for every column, ahead as far as n_ahead, the scales zero.
  std::array<const T*, L> k, v;
  std::array<float, L> ks{}, vs{};
  std::array<Ahead, L> ahead;  // at most one range per page run, a run per column
  int64_t n_ahead = 0;

  Drip keys_ahead() const { return {ahead.data(), ahead.data() + n_ahead, false}; }
  Drip values_ahead() const { return {ahead.data(), ahead.data() + n_ahead, true}; }
};

// The columns of keys [kb, ke) of KV head kvh in the window from s0, and the next step's pages up
// to key k_end: prefetched here if prefetch_now, else as the keys and values are packed or weighed
// (keys_ahead, values_ahead).
template <class T>
void window_columns(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t kb, int64_t ke, int64_t k_end,
                    int64_t s0, WindowCols<T>& w, bool prefetch_now) {
  thread_local std::vector<PageRun<T>> kruns, vruns;
  thread_local std::vector<const float*> kscales, vscales;
  step_runs<T>(c, seq, kvh, kb, ke, k_end, kruns, vruns, kscales, vscales);
  w.k.fill(nullptr);
  w.v.fill(nullptr);
  w.n_ahead = 0;
  for (size_t r = 0; r < kruns.size(); ++r) {
    if (prefetch_now) {
      prefetch_ahead(kruns[r]);
      prefetch_ahead(vruns[r]);
    } else if (kruns[r].ahead_bytes > 0) {
      w.ahead[size_t(w.n_ahead++)] = {kruns[r].ahead, vruns[r].ahead, kruns[r].ahead_bytes, vruns[r].ahead_bytes};
    }
    for (int64_t j = 0; j < kruns[r].n; ++j) {
      const int64_t col = kb - s0 + kruns[r].off + j;
      w.k[size_t(col)] = kruns[r].rows + j * kruns[r].ld;
      w.v[size_t(col)] = vruns[r].rows + j * vruns[r].ld;
      if constexpr (kv_scaled_v<T>) w.ks[size_t(col)] = kscales[r][j], w.vs[size_t(col)] = vscales[r][j];
    }
  }
}

// Blocks [0, nblk) of the window's keys (16 columns each), block b at kp + b * pp * 16 as
// pack_key_pairs_rows packs them, pairs [(d + 1) / 2, pp) zero.
template <class T>
void pack_window_keys(const WindowCols<T>& w, int64_t nblk, int64_t d, int64_t pp, uint32_t* kp) {
  const int64_t pairs = (d + 1) / 2;
  auto drip = w.keys_ahead();
  for (int64_t b = 0; b < nblk; ++b) {
    uint32_t* kb = kp + b * pp * 16;
    pack_key_pairs_rows<T>(
        [&](int j) {
          drip.next();  // a line of the next step's keys for each row loaded
          return w.k[size_t(b * 16 + j)];
        },
        d, kb);
    if (pairs < pp) std::memset(kb + pairs * 16, 0, size_t((pp - pairs) * 16) * 4);
  }
}

// The window's keys for a one-row job of two to eight heads (scores_grouped): KW keys (2, 4 or 8)
// interleaved pair by pair, so one 64-, 128- or 256-bit broadcast hands a pair of all KW keys to
// every head's lanes. pack_window_keys transposes 16 keys, four shuffles for each vector it stores
// (a third of a GQA decode step went into that); this takes one (KW = 2), two or three. A set is
// NA = grouped_sums(KW) groups of KW columns: set s holds columns [NA KW s, NA KW (s + 1)), group i
// KW columns from NA KW s + KW i; their pair p at kg + s * pp * NA KW + (p / V) * 16 NA + 16 i +
// (p % V) KW, V = 16 / KW pairs a vector; pairs past the head width (pp: a multiple of 16) and
// missing columns zero.
constexpr int grouped_sums(int kw) { return kw == 8 ? 8 : 16; }  // a set is at most a window
template <int KW, class T>
void pack_window_keys_grouped(const WindowCols<T>& w, int64_t nsets, int64_t d, int64_t pp, uint32_t* kg) {
  static_assert(KW == 2 || KW == 4 || KW == 8);
  constexpr int NA = grouped_sums(KW), VS = 16 * NA;  // dwords between a group's vectors
  alignas(64) static constexpr uint32_t kLo[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  alignas(64) static constexpr uint32_t kHi[16] = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i lo = _mm512_load_si512(kLo), hi = _mm512_load_si512(kHi);
  const __m512i q0 = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), q1 = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
  const __m512i o0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), o1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  // The packed vectors of pairs [16 c, 16 c + 16) of a group's KW rows r, to o.
  const auto store = [&](const __m512i* r, uint32_t* o) {
    // Pairs of two keys: a0 b0 a1 b1 ... (pairs 0-7), then pairs 8-15.
    const __m512i ab0 = _mm512_permutex2var_epi32(r[0], lo, r[1]), ab1 = _mm512_permutex2var_epi32(r[0], hi, r[1]);
    if constexpr (KW == 2) {
      _mm512_store_si512(o, ab0);
      _mm512_store_si512(o + VS, ab1);
    } else {  // of four: a0 b0 c0 d0 a1 b1 c1 d1 ... (pairs 0-3), 4-7, 8-11, 12-15
      const __m512i cd0 = _mm512_permutex2var_epi32(r[2], lo, r[3]), cd1 = _mm512_permutex2var_epi32(r[2], hi, r[3]);
      const __m512i x[4] = {_mm512_permutex2var_epi64(ab0, q0, cd0), _mm512_permutex2var_epi64(ab0, q1, cd0),
                            _mm512_permutex2var_epi64(ab1, q0, cd1), _mm512_permutex2var_epi64(ab1, q1, cd1)};
      if constexpr (KW == 4) {
        for (int t = 0; t < 4; ++t) _mm512_store_si512(o + t * VS, x[t]);
      } else {  // of eight: the 128-bit quads of keys a-d and e-h of a pair side by side (pairs 0-1, ...)
        const __m512i ef0 = _mm512_permutex2var_epi32(r[4], lo, r[5]), ef1 = _mm512_permutex2var_epi32(r[4], hi, r[5]);
        const __m512i gh0 = _mm512_permutex2var_epi32(r[6], lo, r[7]), gh1 = _mm512_permutex2var_epi32(r[6], hi, r[7]);
        const __m512i y[4] = {_mm512_permutex2var_epi64(ef0, q0, gh0), _mm512_permutex2var_epi64(ef0, q1, gh0),
                              _mm512_permutex2var_epi64(ef1, q0, gh1), _mm512_permutex2var_epi64(ef1, q1, gh1)};
        for (int t = 0; t < 4; ++t) {
          _mm512_store_si512(o + 2 * t * VS, _mm512_permutex2var_epi64(x[t], o0, y[t]));
          _mm512_store_si512(o + (2 * t + 1) * VS, _mm512_permutex2var_epi64(x[t], o1, y[t]));
        }
      }
    }
  };
  // int8 / fp8 rows (converted as loaded) take no branch: columns no row looks at read a row of
  // zeros, and only a head's last chunk is masked (their decode 1.09-1.19x). bf16 rows keep the
  // branch: read that way, GCC folded their loads into the permutes and decode from DRAM (32k keys)
  // ran 0.8x.
  constexpr bool kBranchless = sizeof(T) == 1;
  thread_local std::vector<T> zeros;
  if (kBranchless && int64_t(zeros.size()) < 2 * pp) zeros.assign(size_t(2 * pp), T{});
  const int64_t full = d / 32;
  const __mmask32 tail = first32(d - 32 * full);
  auto drip = w.keys_ahead();
  for (int64_t s = 0; s < nsets; ++s)
    for (int64_t i = 0; i < NA; ++i) {
      const T* const* rows = w.k.data() + s * NA * KW + i * KW;
      uint32_t* out = kg + s * pp * NA * KW + 16 * i;
      __m512i r[KW];
      if constexpr (kBranchless) {
        const T* rz[KW];
        #pragma GCC unroll 8
        for (int j = 0; j < KW; ++j) rz[j] = rows[j] ? rows[j] : zeros.data();
        for (int64_t c = 0; c < pp / 16; ++c) {  // pairs [16 c, 16 c + 16): vectors c KW .. c KW + KW - 1
          const __mmask32 m = c < full ? ~__mmask32(0) : tail;
          #pragma GCC unroll 8
          for (int j = 0; j < KW; ++j) {
            drip.next();  // a line of the next step's keys for each row loaded
            r[j] = load32_bf16_masked(rz[j] + 32 * c, m);
          }
          store(r, out + c * KW * VS);
        }
      } else {
        for (int64_t c = 0; c < pp / 16; ++c) {
          const int64_t elems = std::min<int64_t>(32, d - 32 * c);
          #pragma GCC unroll 8
          for (int j = 0; j < KW; ++j) {
            drip.next();
            r[j] = rows[j] ? load32_bf16(rows[j] + 32 * c, elems) : _mm512_setzero_si512();
          }
          store(r, out + c * KW * VS);
        }
      }
    }
}

// Pair p of the window's values (columns 2p, 2p + 1; none past np pairs), elements [e, e + 32), as
// value_pair_rows gives them. A pair whose first key no row sees (an odd first column) takes the
// second key's values in its place: every row weighs that column zero.
template <class T>
[[gnu::always_inline]] inline void window_value_pair(const WindowCols<T>& w, int64_t p, int64_t np, int64_t e,
                                                     int64_t vd, __m512i lo, __m512i hi, __m512i& x0, __m512i& x1) {
  const T* va = p < np ? w.v[size_t(2 * p)] : nullptr;
  const T* vb = p < np ? w.v[size_t(2 * p + 1)] : nullptr;
  x0 = x1 = _mm512_setzero_si512();
  if (e < vd && (va || vb)) value_pair_rows(va ? va : vb, vb, e, std::min<int64_t>(32, vd - e), lo, hi, x0, x1);
}

// Pair rows [0, rows) of the window's values (np of them hold values, the rest zero): pair row p
// of column block e at vp + p * cols + e, cols a multiple of 32.
template <class T>
void pack_window_values(const WindowCols<T>& w, int64_t rows, int64_t np, int64_t vd, int64_t cols, uint32_t* vp) {
  const __m512i lo = _mm512_load_si512(kPairLo), hi = _mm512_load_si512(kPairHi);
  auto drip = w.values_ahead();
  for (int64_t p = 0; p < rows; ++p) {
    uint32_t* row = vp + p * cols;
    for (int64_t e = 0; e < cols; e += 32) {
      drip.next(), drip.next();  // as many lines of the next step's values as rows loaded
      __m512i x0, x1;
      window_value_pair(w, p, np, e, vd, lo, hi, x0, x1);
      _mm512_store_si512(row + e, x0);
      _mm512_store_si512(row + e + 16, x1);
    }
  }
}

// The exponentials of G heads' scores (head g's L columns at x + g * L, its own [off, off + n))
// less shift[g], their sums to sum[g], and the weights rounded to bf16 (each times its value
// row's scale vs[col] if kScaled) to w + g * L, every column of the window: zero where the row
// does not look. Up to 8 heads side by side, each head's pieces in column order. A score less its
// head's running max is never positive, so exp512_nonpositive serves, with half exp512's work.
template <bool kScaled>
void exp_to_bf16(const float* x, uint16_t* w, int64_t G, int64_t off, int64_t n, const float* shift, float* sum,
                 const float* vs) {
  constexpr int64_t kMaxRows = 8;
  for (int64_t g0 = 0; g0 < G; g0 += kMaxRows) {
    const int64_t R = std::min(kMaxRows, G - g0);
    __m512 acc[kMaxRows], sh[kMaxRows];
    for (int64_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps(), sh[r] = _mm512_set1_ps(shift[g0 + r]);
    for (int64_t cc = 0; cc < L; cc += 16) {
      const __mmask16 mk = cols_mask(off, n, cc);
      __m512 s;
      if constexpr (kScaled) s = _mm512_maskz_loadu_ps(mk, vs + cc);
      for (int64_t r = 0; r < R; ++r) {
        uint16_t* wr = w + (g0 + r) * L + cc;
        if (!mk) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(wr), _mm256_setzero_si256());
          continue;
        }
        const float* xr = x + (g0 + r) * L + cc;
        const __m512 e = _mm512_maskz_mov_ps(mk, exp512_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, xr), sh[r])));
        acc[r] = _mm512_add_ps(acc[r], e);
        const __m512 wv = kScaled ? _mm512_mul_ps(e, s) : e;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(wr), (__m256i)_mm512_cvtneps_pbh(wv));
      }
    }
    for (int64_t r = 0; r < R; ++r) sum[g0 + r] = hsum512(acc[r]);
  }
}

// One row's softmax over its own columns of the window from s0, given its G heads' raw scores
// (head g's L columns at x + g * L), 16 columns at a time from s0 (so a row's sums and maxima are
// taken in the same pieces in any group): the scores times the scale (and the keys' scales ks),
// their max, then the exponentials, their sums, and the weights in bf16 (times the values' scales
// vs) to wrow (G rows of L, zero wherever the row does not look). The row's partial moves on, and
// its running weighted sums (G rows of `cols` floats at acc) are zeroed at its chunk's first step
// or rescaled.
template <class Ops, bool kScaled>
void row_softmax(const AttnParams& p, const RowStep& r, int64_t s0, int64_t G, float* x, uint16_t* wrow, float* acc,
                 int64_t cols, int64_t vd, const float* ks, const float* vs, const AttnWork& w) {
  const int64_t off = r.kb - s0, nj = r.ke - r.kb;
  float* const smx = w.pmx;  // per head: the step's max, then the exponentials' sums and the corrections
  float* const sums = w.pmx + G;
  float* const corr = w.pmx + 2 * G;
  const __m512 sv = _mm512_set1_ps(p.scale);
  for (int64_t g = 0; g < G; ++g) {
    float* xg = x + g * L;
    __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t cc = 0; cc < L; cc += 16) {
      const __mmask16 mk = cols_mask(off, nj, cc);
      if (!mk) continue;
      __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xg + cc), sv);
      if constexpr (kScaled) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, ks + cc));
      _mm512_storeu_ps(xg + cc, v);
      mx = _mm512_mask_max_ps(mx, mk, mx, v);
    }
    smx[g] = hmax(mx);
  }
  step_softmax_with<Ops>(p, x + off, L, G, nj, r.part, nullptr, vd, smx, sums, corr,
                         [&](const float* shift, float* sum) {
                           exp_to_bf16<kScaled>(x, wrow, G, off, nj, shift, sum, vs);
                         });
  if (r.first) {
    std::memset(acc, 0, size_t(G * cols) * 4);
  } else {
    for (int64_t g = 0; g < G; ++g)
      if (corr[g] != 1.0f) Ops::scale(acc + g * cols, corr[g], vd);
  }
}
