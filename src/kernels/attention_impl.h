// Internal: the attention algorithm, written once over a small set of vector
// primitives (Ops) and instantiated per ISA in attention_*.cpp, inside each
// file's target region. Ops must be a type local to that file (anonymous
// namespace), so the instantiations never collide between ISAs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/bf16.h"
#include "core/fp8.h"
#include "kernels/attention.h"

namespace dpserve::kernels {

// One cached element as fp32 (bf16 is stored as bf16_t, int8 as int8_t, fp8 as fp8_e4m3_t /
// fp8_e5m2_t); for int8 and fp8 the code's value, before the row's scale.
inline float kv_to_f32(float x) { return x; }
inline float kv_to_f32(bf16_t x) { return bf16_to_f32(x); }
inline float kv_to_f32(int8_t x) { return float(x); }
inline float kv_to_f32(fp8_e4m3_t x) { return fp8_to_f32(x); }
inline float kv_to_f32(fp8_e5m2_t x) { return fp8_to_f32(x); }

// Element types whose rows carry a scale.
template <class T>
inline constexpr bool kv_scaled_v =
    std::is_same_v<T, int8_t> || std::is_same_v<T, fp8_e4m3_t> || std::is_same_v<T, fp8_e5m2_t>;

struct AttnCtx {
  const float* q;
  int64_t ldq;
  const AttnSeq* seqs;
  KVLayerView kv;
  AttnParams p;
  float* out;
  int64_t ldo;
};

// Flash-decoding's key split. A row that sees more than kSplitAbove keys is computed in chunks
// of the key positions [c * kKeyChunk, (c + 1) * kKeyChunk) (clipped to what it sees): each
// chunk gives a partial softmax (its max, its sum of exponentials, its weighted sum of V), and
// the partials are merged in chunk order. The chunks depend only on the row's own key range,
// never on the batch or the team, so a row's bits are the same however the chunks are shared
// out: one job may run them all in turn, or each chunk may be its own job.
inline constexpr int64_t kKeyChunk = 256;
inline constexpr int64_t kSplitAbove = 512;

struct KeyChunks {
  int64_t first = 0, n_keys = 0, count = 1;
  // Keys [k0, k1) of chunk c.
  void range(int64_t c, int64_t& k0, int64_t& k1) const {
    if (count == 1) {
      k0 = first;
      k1 = n_keys;
      return;
    }
    const int64_t base = first / kKeyChunk + c;
    k0 = std::max(first, base * kKeyChunk);
    k1 = std::min(n_keys, (base + 1) * kKeyChunk);
  }
};

// The chunks of query row i of `seq` (it sees keys [first, pos0 + i + 1)).
inline KeyChunks key_chunks(const AttnSeq& seq, int64_t i, int64_t window) {
  KeyChunks k;
  k.n_keys = seq.pos0 + i + 1;
  k.first = window > 0 ? std::max<int64_t>(0, k.n_keys - window) : 0;
  k.count = k.n_keys - k.first <= kSplitAbove ? 1 : (k.n_keys - 1) / kKeyChunk - k.first / kKeyChunk + 1;
  return k;
}

// Floats of one partial of G heads: max [G], sum [G], weighted V [G][v width].
inline int64_t part_floats(int64_t G, int64_t vd) { return G * (vd + 2); }

// A unit of work of the driver. Heads [g0, g1) of KV head kvh's group (any split of a group
// gives each head the same bits: see page_scores).
struct AttnJob {
  enum Kind : uint8_t {
    kRows,   // query rows [i0, i1) of sequence s, whole (their chunks in turn, merged)
    kChunk,  // chunk `chunk` of row i0: its partial to parts + part
    kMerge,  // row i0: merges its chunks' partials (at parts + part, one after another), writes out
  };
  Kind kind = kRows;
  int64_t s = 0, kvh = 0, g0 = 0, g1 = 0, i0 = 0, i1 = 0, chunk = 0, part = 0;
};

// Runs one job; `parts` is the driver's array of partials (kChunk / kMerge only).
using AttnJobFn = void (*)(const AttnCtx& c, const AttnJob& j, float* parts);

namespace portable {
void attention_job(const AttnCtx& c, const AttnJob& j, float* parts);
}
namespace avx2 {
void attention_job(const AttnCtx& c, const AttnJob& j, float* parts);
}
namespace avx512 {
void attention_job(const AttnCtx& c, const AttnJob& j, float* parts);
}
namespace avx512bf16 {  // bf16 / int8 / fp8 KV: vdpbf16ps products; fp32 KV as avx512
void attention_job(const AttnCtx& c, const AttnJob& j, float* parts);
}

// Online softmax over the pages, one page of keys at a time: scores of all
// heads of the group for the page, one rescale of the running sums per page.
//
// T is the cache's element type (float, bf16_t, int8_t, fp8_e4m3_t, fp8_e5m2_t); Ops's primitives
// that read keys or values are templates over it and widen each element to fp32 as they load it,
// so the cache is read in its compact form. An int8 or fp8 row's scale s is applied outside them: a score is
// s_k * (q . k_q), a value row's weight p * s_v (the softmax sums use p itself).
//
// Ops: scores(q, k, ldk, n, d, scale, out) (out[j] = (q . k[j * ldk]) * scale for j < n, each
// in one fixed order whatever n; returns their max), axpy_rows(acc, v, ldv, p, n, d)
// (acc += sum_j p[j] v[j * ldv], j in order, acc held in registers across the page),
// scale(acc, c, d), exp_sub_sum(x, n, shift) (x = exp(x - shift), returns the sum).
// Optionally scores_heads / axpy_heads: the same for the G query heads of a KV head at once
// (head g's q at q + g * ldq, its scores at out + g * ldo, its sums at acc + g * lda), each
// head's every value bit for bit what scores / axpy_rows give it alone: they only let the
// heads share the loads of a page's keys and values (an Ops may also compute them its own way,
// as the bf16 products do, as long as a head's bits depend on nothing but its own row).
// Optionally begin_job(): called at the start of every job (an Ops that keeps converted
// queries or keys for the job's later steps forgets them there).
template <class Ops, class T>
void page_scores(const float* q, int64_t ldq, int64_t G, const T* k, int64_t ldk, int64_t n, int64_t d,
                 float scale, float* out, int64_t ldo, float* mx) {
  if constexpr (requires { Ops::scores_heads(q, ldq, G, k, ldk, n, d, scale, out, ldo, mx); }) {
    Ops::scores_heads(q, ldq, G, k, ldk, n, d, scale, out, ldo, mx);
  } else {
    for (int64_t g = 0; g < G; ++g) mx[g] = Ops::scores(q + g * ldq, k, ldk, n, d, scale, out + g * ldo);
  }
}

template <class Ops, class T>
void page_axpy(float* acc, int64_t lda, int64_t G, const T* v, int64_t ldv, const float* p, int64_t ldp,
               int64_t n, int64_t d) {
  if constexpr (requires { Ops::axpy_heads(acc, lda, G, v, ldv, p, ldp, n, d); }) {
    Ops::axpy_heads(acc, lda, G, v, ldv, p, ldp, n, d);
  } else {
    for (int64_t g = 0; g < G; ++g) Ops::axpy_rows(acc + g * lda, v, ldv, p + g * ldp, n, d);
  }
}

// x[j] *= s[j] for j < n, returning the largest product; out[j] = a[j] * b[j]. Elementwise
// products and a max have one result whatever the vector width, so an Ops may supply its own
// (mul_max / mul) without changing a bit.
template <class Ops>
float mul_max(float* x, const float* s, int64_t n) {
  if constexpr (requires { Ops::mul_max(x, s, n); }) {
    return Ops::mul_max(x, s, n);
  } else {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j] *= s[j]);
    return m;
  }
}

template <class Ops>
void mul_to(float* out, const float* a, const float* b, int64_t n) {
  if constexpr (requires { Ops::mul(out, a, b, n); }) {
    Ops::mul(out, a, b, n);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = a[j] * b[j];
  }
}

// Per-thread work space of one job: scores of a page, page maxima, scaled rows' weights.
struct AttnWork {
  float* sc;   // [G][ps] scores of one page
  float* pmx;  // [G] max of this page's scores
  float* pv;   // int8 / fp8: [G][ps] weights times the values' scales
  float* tmp;  // one partial (merging chunks in a kRows job)
};

// An empty partial of G heads: max -inf, sum 0, weighted V 0.
inline void partial_init(float* part, int64_t G, int64_t vd) {
  std::fill(part, part + G, -std::numeric_limits<float>::infinity());
  std::fill(part + G, part + 2 * G + G * vd, 0.0f);
}

// Pages are scattered over the pool, so the hardware prefetcher cannot guess the next one:
// fetch keys and values of KV head kvh in the page after page pi of the sequence (its first
// min(ps, k_end - next page's first key) rows) while this page is computed. Always inlined: as
// a function of its own, GCC 12 finds it has no side effects (a prefetch is none) and drops
// every call to it, and decode at 8k keys ran 2x slower.
template <class T>
[[gnu::always_inline]] inline void prefetch_next_page(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t pi, int64_t k_end) {
  const int64_t ps = c.kv.page_size, kr = c.kv.k_row_stride(), vr = c.kv.v_row_stride();
  const int64_t first = (pi + 1) * ps;
  if (first >= k_end) return;
  const int64_t next = seq.pages[pi + 1];
  const int64_t nn = std::min(ps, k_end - first);
  const char* kn = reinterpret_cast<const char*>(static_cast<const T*>(c.kv.k) + next * c.kv.k_page_stride() + kvh * ps * kr);
  const char* vn = reinterpret_cast<const char*>(static_cast<const T*>(c.kv.v) + next * c.kv.v_page_stride() + kvh * ps * vr);
  for (int64_t b = 0; b < nn * kr * int64_t(sizeof(T)); b += 64) __builtin_prefetch(kn + b);
  for (int64_t b = 0; b < nn * vr * int64_t(sizeof(T)); b += 64) __builtin_prefetch(vn + b);
}

// One step of the online softmax: the partial of heads [g0, g0 + G) of KV head kvh for query
// row `qrow` takes keys [jb, jb + nj), all in page pi of the sequence (its keys [pi * ps,
// (pi + 1) * ps)): scores of all G heads for those keys, one rescale of the running sums. A row's result is the same sequence of steps, page by page
// over each key chunk, whichever job runs it and whatever it interleaves the steps with.
template <class Ops, class T>
void partial_step(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G, const float* qrow,
                  int64_t pi, int64_t jb, int64_t nj, float* part, const AttnWork& w) {
  constexpr bool kScaled = kv_scaled_v<T>;
  const int64_t hd = c.p.head_dim, vd = c.kv.value_dim(), ps = c.kv.page_size;
  const int64_t kr = c.kv.k_row_stride(), vr = c.kv.v_row_stride();
  const int64_t h0 = kvh * (c.p.n_heads / c.p.n_kv_heads) + g0;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* mx = part;
  float* den = part + G;
  float* acc = part + 2 * G;
  float* sc = w.sc;
  float* pmx = w.pmx;
  float* pv = w.pv;
  const int64_t j0 = pi * ps;
  const int64_t page = seq.pages[pi];
  const T* kp = static_cast<const T*>(c.kv.k) + page * c.kv.k_page_stride() + (kvh * ps + jb - j0) * kr;
  const T* vp = static_cast<const T*>(c.kv.v) + page * c.kv.v_page_stride() + (kvh * ps + jb - j0) * vr;
  page_scores<Ops, T>(qrow + h0 * hd, hd, G, kp, kr, nj, hd, c.p.scale, sc, ps, pmx);
  const float* vsc = nullptr;
  if constexpr (kScaled) {
    // The keys' scales turn the dot products of the codes into scores; the max follows them.
    const int64_t so = page * c.kv.scale_page_stride() + kvh * ps + jb - j0;
    const float* ksc = c.kv.k_scale + so;
    vsc = c.kv.v_scale + so;
    for (int64_t g = 0; g < G; ++g) pmx[g] = mul_max<Ops>(sc + g * ps, ksc, nj);
  }
  for (int64_t g = 0; g < G; ++g) {
    float* sg = sc + g * ps;
    const float m_new = std::max(mx[g], pmx[g]);
    // exp(0) is 1 exactly: skip the call when the running max did not move (most pages).
    const float corr = mx[g] == neg_inf ? 0.0f : mx[g] == m_new ? 1.0f : std::exp(mx[g] - m_new);
    const float sum = Ops::exp_sub_sum(sg, nj, m_new);
    float* ag = acc + g * vd;
    if (corr != 1.0f) Ops::scale(ag, corr, vd);
    den[g] = den[g] * corr + sum;
    mx[g] = m_new;
  }
  if constexpr (kScaled) {
    for (int64_t g = 0; g < G; ++g) mul_to<Ops>(pv + g * ps, sc + g * ps, vsc, nj);
    page_axpy<Ops, T>(acc, vd, G, vp, vr, pv, ps, nj, vd);
  } else {
    page_axpy<Ops, T>(acc, vd, G, vp, vr, sc, ps, nj, vd);
  }
}

// The partial softmax of heads [g0, g0 + G) of KV head kvh for query row `qrow` over keys
// [k0, k1): part = [max][sum][weighted V] (part_floats(G, vd)), page by page. k_end: the row's
// last key + 1 (the next page is prefetched up to it, across the chunk's end: the next chunk
// reads it).
template <class Ops, class T>
void chunk_partial(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G, const float* qrow,
                   int64_t k0, int64_t k1, int64_t k_end, float* part, const AttnWork& w) {
  const int64_t ps = c.kv.page_size;
  partial_init(part, G, c.kv.value_dim());
  for (int64_t pi = k0 / ps, j0 = pi * ps; j0 < k1; ++pi, j0 += ps) {
    const int64_t jb = std::max(j0, k0);  // first key of this page in the range
    prefetch_next_page<T>(c, seq, kvh, pi, k_end);
    partial_step<Ops, T>(c, seq, kvh, g0, G, qrow, pi, jb, std::min(j0 + ps, k1) - jb, part, w);
  }
}

// st = st merged with partial p (the later chunk), both of G heads. Not inlined, so every
// merge of a row, whichever job runs it, is the same machine code and gives the same bits.
template <class Ops>
[[gnu::noinline]] void merge_partial(float* st, const float* p, int64_t G, int64_t vd) {
  for (int64_t g = 0; g < G; ++g) {
    const float ma = st[g], mb = p[g], m = std::max(ma, mb);
    const float ca = ma == m ? 1.0f : std::exp(ma - m), cb = mb == m ? 1.0f : std::exp(mb - m);
    float* a = st + 2 * G + g * vd;
    const float* b = p + 2 * G + g * vd;
    if (ca != 1.0f) Ops::scale(a, ca, vd);
    for (int64_t d = 0; d < vd; ++d) a[d] += cb * b[d];
    st[G + g] = st[G + g] * ca + p[G + g] * cb;
    st[g] = m;
  }
}

// Output heads [h0, h0 + G) of a row from its (merged) partial.
inline void finish_row(const float* st, int64_t G, int64_t vd, float* oh) {
  for (int64_t g = 0; g < G; ++g) {
    const float inv = 1.0f / st[G + g];
    for (int64_t d = 0; d < vd; ++d) oh[g * vd + d] = st[2 * G + g * vd + d] * inv;
  }
}

template <class Ops, class T>
void attention_job_typed(const AttnCtx& c, const AttnJob& j, float* parts) {
  const AttnSeq& seq = c.seqs[j.s];
  const int64_t vd = c.kv.value_dim(), ps = c.kv.page_size;
  const int64_t G = j.g1 - j.g0, pf = part_floats(G, vd);
  const int64_t h0 = j.kvh * (c.p.n_heads / c.p.n_kv_heads) + j.g0;
  if constexpr (requires { Ops::begin_job(); }) Ops::begin_job();

  // Work space: a page's scores and weights, then a running partial and a chunk's partial for
  // each row of the job.
  const int64_t n_rows = j.kind == AttnJob::kRows ? j.i1 - j.i0 : 1;
  thread_local std::vector<float> scratch;
  const size_t need = size_t(G * (2 * ps + 1) + pf * (1 + 2 * n_rows));
  if (scratch.size() < need) scratch.resize(need);
  AttnWork w{scratch.data(), nullptr, nullptr, nullptr};
  w.pmx = w.sc + G * ps;
  w.pv = w.pmx + G;
  w.tmp = w.pv + G * ps;
  float* st = w.tmp + pf;  // the row's running partial

  switch (j.kind) {
    case AttnJob::kChunk: {
      const KeyChunks kc = key_chunks(seq, j.i0, c.p.window);
      int64_t k0, k1;
      kc.range(j.chunk, k0, k1);
      chunk_partial<Ops, T>(c, seq, j.kvh, j.g0, G, c.q + (seq.q_row + j.i0) * c.ldq, k0, k1, kc.n_keys, parts + j.part,
                            w);
      return;
    }
    case AttnJob::kMerge: {
      const KeyChunks kc = key_chunks(seq, j.i0, c.p.window);
      std::copy(parts + j.part, parts + j.part + pf, st);
      for (int64_t ch = 1; ch < kc.count; ++ch) merge_partial<Ops>(st, parts + j.part + ch * pf, G, vd);
      finish_row(st, G, vd, c.out + (seq.q_row + j.i0) * c.ldo + h0 * vd);
      return;
    }
    case AttnJob::kRows: {
      // The rows walk the pages together: a page's keys and values come from memory once for all
      // of the job's rows and from the core's cache for the others (row by row, a long prefill
      // row streamed the whole range again for each row). Each row still takes its own steps,
      // chunk ends and merges in its own order (chunk_partial's, then merge_partial after each
      // later chunk), so its bits are those it gets alone.
      struct Cursor {
        KeyChunks kc;
        int64_t ch, k0, k1, next;  // chunk, its keys [k0, k1), the next key to take
        const float* q;
        float* st;   // running partial (chunk 0, then the merge of those after it)
        float* cur;  // the partial being built: st for chunk 0, then its own
      };
      thread_local std::vector<Cursor> rows;
      rows.resize(size_t(n_rows));
      int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
      for (int64_t r = 0; r < n_rows; ++r) {
        Cursor& u = rows[size_t(r)];
        u.kc = key_chunks(seq, j.i0 + r, c.p.window);
        u.ch = 0;
        u.kc.range(0, u.k0, u.k1);
        u.next = u.k0;
        u.q = c.q + (seq.q_row + j.i0 + r) * c.ldq;
        u.st = u.cur = st + 2 * r * pf;
        partial_init(u.st, G, vd);
        lo = std::min(lo, u.k0);
        hi = std::max(hi, u.kc.n_keys);
      }
      for (int64_t pi = lo / ps, j0 = pi * ps; j0 < hi; ++pi, j0 += ps) {
        prefetch_next_page<T>(c, seq, j.kvh, pi, hi);
        for (int64_t r = 0; r < n_rows; ++r) {
          Cursor& u = rows[size_t(r)];
          while (u.ch < u.kc.count && u.next < j0 + ps) {
            const int64_t e = std::min(j0 + ps, u.k1);
            partial_step<Ops, T>(c, seq, j.kvh, j.g0, G, u.q, pi, u.next, e - u.next, u.cur, w);
            u.next = e;
            if (e < u.k1) break;
            // The chunk is done: fold it in, start the next or write the row.
            if (u.ch > 0) merge_partial<Ops>(u.st, u.cur, G, vd);
            if (++u.ch < u.kc.count) {
              u.kc.range(u.ch, u.k0, u.k1);
              u.next = u.k0;
              u.cur = u.st + pf;
              partial_init(u.cur, G, vd);
            } else {
              finish_row(u.st, G, vd, c.out + (seq.q_row + j.i0 + r) * c.ldo + h0 * vd);
            }
          }
        }
      }
      return;
    }
  }
}

// The job for the view's element type.
template <class Ops>
void attention_job_impl(const AttnCtx& c, const AttnJob& j, float* parts) {
  switch (c.kv.elem) {
    case KVElem::kF32: attention_job_typed<Ops, float>(c, j, parts); break;
    case KVElem::kBF16: attention_job_typed<Ops, bf16_t>(c, j, parts); break;
    case KVElem::kInt8: attention_job_typed<Ops, int8_t>(c, j, parts); break;
    case KVElem::kFp8E4M3: attention_job_typed<Ops, fp8_e4m3_t>(c, j, parts); break;
    case KVElem::kFp8E5M2: attention_job_typed<Ops, fp8_e5m2_t>(c, j, parts); break;
  }
}

}  // namespace dpserve::kernels
