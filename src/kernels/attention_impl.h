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
#include "kernels/isa.h"

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
inline KeyChunks key_chunks(const AttnSeq& seq, int64_t i, const AttnParams& p) {
  KeyChunks k;
  k.n_keys = seq.pos0 + i + 1;
  k.first = p.first_key(seq.pos0 + i);
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
namespace amx {  // bf16 / int8 / fp8 KV: tdpbf16ps tiles; fp32 KV as avx512
void attention_job(const AttnCtx& c, const AttnJob& j, float* parts);
}

// Online softmax over the keys one step at a time (kStepKeys positions, over the pages they
// span): scores of all heads of the group for the step, one rescale of the running sums per step.
//
// T is the cache's element type (float, bf16_t, int8_t, fp8_e4m3_t, fp8_e5m2_t); Ops's primitives
// that read keys or values are templates over it and widen each element to fp32 as they load it,
// so the cache is read in its compact form. An int8 or fp8 row's scale s is applied outside them: a score is
// s_k * (q . k_q), a value row's weight p * s_v (the softmax sums use p itself).
//
// Ops: scores(q, k, ldk, n, d, scale, out) (out[j] = (q . k[j * ldk]) * scale for j < n, each
// in one fixed order whatever n; returns their max; only for the element types an Ops has no
// scores_heads for), axpy_rows(acc, v, ldv, p, n, d)
// (acc += sum_j p[j] v[j * ldv], j in order, acc held in registers across the page),
// scale(acc, c, d), exp_sub_sum(x, n, shift) (x = exp(x - shift), returns the sum). Optionally
// exp_sub_sum_heads(x, ldx, G, n, shift, sum): exp_sub_sum of G rows at once (row g at x + g * ldx,
// with shift[g], its sum to sum[g]), each row's bits those exp_sub_sum gives it.
// Optionally scores_heads / axpy_heads: the same for the G query heads of a KV head at once
// (head g's q at q + g * ldq, its scores at out + g * ldo, its sums at acc + g * lda), each
// head's every value bit for bit what scores / axpy_rows give it alone: they only let the
// heads share the loads of a page's keys and values (an Ops may also compute them its own way,
// as the bf16 products do, as long as a head's bits depend on nothing but its own row).
// Optionally max_of(x, n) (the largest of x[0, n)): then scores / scores_heads are given no mx
// (nullptr) and skip their maxima, and a step's max is taken in one pass over its scores (a max
// is exact, so the bits are the same either way).
// Optionally scores_runs(q, ldq, G, runs, scales, n_runs, d, scale, out, ldo) (with max_of): the
// scores of a whole step, its pages' runs of keys given as PageRuns (run r's scores at
// out + runs[r].off), each score's bits those scores_heads gives it (an Ops may then share a
// query's loads between pages); int8 / fp8 rows (scales: run r's key scales at scales[r], else
// nullptr): each score then times its key's scale, the product step_scores takes otherwise.
// False: the Ops left this step (for this G) to step_scores, page by page.
// Optionally axpy_runs(acc, lda, G, runs, scales, n_runs, p, ldp, d): page_axpy over a whole step,
// the pages' runs of values given as PageRuns (run r weighed by p + runs[r].off), each head's bits
// those of page_axpy over the runs in turn (an Ops may keep the sums in registers across pages);
// int8 / fp8 rows (scales: run r's value scales, else nullptr): each weight times its row's scale
// first, the product step_values takes otherwise. False: left to step_values, page by page.
// Optionally begin_job(rows): called at the start of every job of `rows` query rows (an Ops that
// keeps converted queries, keys or values for the job's later steps or rows forgets them there,
// and may keep them only when other rows will read them again).
// A run of a step's keys (or values) inside one page: n rows from `rows` (ld elements apart),
// column `off` of the step's scores (or weights). `ahead`: bytes to prefetch as the run is read
// (the same rows of the next step's page), so the fetches of the next step are spread over this
// one's work page by page.
template <class T>
struct PageRun {
  const T* rows;
  int64_t ld, n, off;
  const char* ahead = nullptr;
  int64_t ahead_bytes = 0;
};

// Where the next step's keys and values are prefetched: into L2 (prefetcht1) on Intel, as the
// weight streams are (kernels/qmatmul.h); there decode attention at 2k-8k keys ran faster than
// with prefetcht0 (an Emerald Rapids Xeon: bf16 cache 1.03x, fp32 1.02-1.11x, int8 0.99-1.04x;
// docs/benchmarks.md). Into L1 elsewhere (AMD, where it was measured before).
inline const bool kKvPrefetchL2 = cpu_is_intel();

// Prefetches n bytes from p, and a run's `ahead` bytes. Always inlined, as prefetch_scales below.
// On x86 as asm: GCC counts __builtin_prefetch as no effect at all, so a loop or a function that
// does nothing else (WindowCols::prefetch_keys) was deleted whole.
[[gnu::always_inline]] inline void prefetch_line(const char* p) {
#if defined(__x86_64__)
  if (kKvPrefetchL2) asm volatile("prefetcht1 %0" : : "m"(*p));
  else asm volatile("prefetcht0 %0" : : "m"(*p));
#else
  if (kKvPrefetchL2) __builtin_prefetch(p, 0, 2);
  else __builtin_prefetch(p);
#endif
}
[[gnu::always_inline]] inline void prefetch_bytes(const char* p, int64_t n) {
  for (int64_t b = 0; b < n; b += 64) prefetch_line(p + b);
}
template <class T>
[[gnu::always_inline]] inline void prefetch_ahead(const PageRun<T>& r) {
  prefetch_bytes(r.ahead, r.ahead_bytes);
}

// The next step's rows at the place of the page a kernel is reading (PageRun::ahead), fetched a
// row's lines for each row the kernel loads (row(), in each pass over the rows: the fetches end by
// the first pass's end, a few lines at a time), where a page's 64-128 lines at once overflowed the
// core's miss buffers and were mostly lost (the bf16 level measured it: attention_bf16_window.h,
// WindowCols::Drip). start() first issues whatever the page before left (a kernel that loads no
// rows: keys a row before packed, fp32 keys scored by trees), finish() too.
struct PageDrip {
  const char* cur = nullptr;
  const char* end = nullptr;
  int64_t per = 0;  // lines a row, one more than a row holds: the fetches end before the page's last row
  [[gnu::always_inline]] void row() {
    for (int64_t i = 0; i < per && cur < end; ++i, cur += 64) prefetch_line(cur);
  }
  [[gnu::always_inline]] void finish() {
    for (; cur < end; cur += 64) prefetch_line(cur);
  }
  template <class T>
  [[gnu::always_inline]] void start(const PageRun<T>& r) {
    finish();
    const int64_t lines = (r.ld * int64_t(sizeof(T)) + 63) / 64;
    if (lines > 8) {
      // Rows wider than a 128-wide fp32 head (MLA's latent, 18-36 lines): a row's lines per row
      // read were bursts as wide as a page's and cost its decode 5-12 %; fetched at once, as before.
      prefetch_ahead(r);
      cur = end = nullptr;
      return;
    }
    cur = r.ahead - reinterpret_cast<uintptr_t>(r.ahead) % 64;
    end = r.ahead + r.ahead_bytes;
    per = lines + 1;
  }
};
inline thread_local PageDrip page_drip;
// Whether an Ops' kernels drip the next step's rows of T (the AVX-512 level's, over 16-bit and
// fp32 rows): the others keep the page's prefetch at its start (AVX2: the calls cost its kernels
// more than they gained, 0.8x at 2k keys; int8 / fp8 rows, half as many lines a row: 0.9x at 2k
// keys; both on an AMD EPYC Zen 5 with the level forced). Kernels call drip_row<kDrip, T>() for
// each row they load, in an instance that drips only while the page has lines to fetch
// (with_drip): in the others (a prefill job's rows but its last, which fetch nothing) the calls
// cost prefill attention 5-10 %.
template <class Ops, class T>
inline constexpr bool kPageDrip = requires { Ops::kPageDrip; } && sizeof(T) > 1;
template <bool kDrip, class T>
[[gnu::always_inline]] inline void drip_row() {
  if constexpr (kDrip && sizeof(T) > 1) page_drip.row();
}
template <class F>
[[gnu::always_inline]] inline void with_drip(F&& f) {
  if (page_drip.cur < page_drip.end) f(std::true_type{});
  else f(std::false_type{});
}
template <class Ops, class T>
[[gnu::always_inline]] inline void page_ahead(const PageRun<T>& r) {
  if constexpr (kPageDrip<Ops, T>) page_drip.start(r);
  else prefetch_ahead(r);
}
template <class Ops, class T>
[[gnu::always_inline]] inline void pages_ahead_done() {
  if constexpr (kPageDrip<Ops, T>) page_drip.finish();
}

template <class Ops>
inline constexpr bool kStepMax = requires(const float* x) { Ops::max_of(x, int64_t(0)); };

// mx: nullptr when kStepMax.
template <class Ops, class T>
void page_scores(const float* q, int64_t ldq, int64_t G, const T* k, int64_t ldk, int64_t n, int64_t d,
                 float scale, float* out, int64_t ldo, float* mx) {
  if constexpr (requires { Ops::scores_heads(q, ldq, G, k, ldk, n, d, scale, out, ldo, mx); }) {
    Ops::scores_heads(q, ldq, G, k, ldk, n, d, scale, out, ldo, mx);
  } else {
    static_assert(!kStepMax<Ops>, "an Ops with max_of has scores_heads");
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
  float* sc;   // [G][kStepKeys] scores of one step
  float* pmx;  // [3 G] the step's max of each head, then its sums, then the sums' corrections
  float* pv;   // int8 / fp8: [G][kStepKeys] weights times the values' scales
  float* tmp;  // one partial (merging chunks in a kRows job)
};

// An empty partial of G heads: max -inf, sum 0, weighted V 0.
inline void partial_init(float* part, int64_t G, int64_t vd) {
  std::fill(part, part + G, -std::numeric_limits<float>::infinity());
  std::fill(part + G, part + 2 * G + G * vd, 0.0f);
}

// The online softmax takes keys a step at a time: the keys [s * kStepKeys, (s + 1) * kStepKeys)
// (clipped to the row's range or chunk), over as many pages as that spans. A step's scores are
// computed page by page, then one max, one pass of exponentials and one sum for the whole step,
// and one rescale of the running sums: the bookkeeping that page-sized steps paid every 16 keys
// (horizontal max and sum, the exp of the correction, loading and storing the weighted sums) is
// paid every 64. Steps are fixed by positions, never by the batch or the page size, and divide
// kKeyChunk, so a row's steps are the same whichever job runs it.
inline constexpr int64_t kStepKeys = 64;
static_assert(kKeyChunk % kStepKeys == 0);

// Pages are scattered over the pool, so the hardware prefetcher cannot guess the next one: each
// step fetches the next step's pages as it goes (PageRun::ahead), one page's rows before each of
// its own pages is read. Issued all at once instead (a step's pages before the step), the
// prefetches filled the core's miss queue and stalled it: decode from DRAM at 32k keys ran 1.2x
// slower than one page ahead, page by page, which this keeps. The rows' scales of the next step
// (int8 / fp8: arrays of their own, whose loads had stalled decode for a fifth of its time) are
// fetched at the start of the step. Always inlined: as a function of its own, GCC 12 finds a
// prefetch has no side effects and drops the calls.
[[gnu::always_inline]] inline void prefetch_scales(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t k0,
                                                   int64_t k1) {
  const int64_t ps = c.kv.page_size;
  for (int64_t pi = k0 / ps; pi * ps < k1; ++pi) {
    const int64_t so = seq.pages[pi] * c.kv.scale_page_stride() + kvh * ps, nn = std::min(ps, k1 - pi * ps);
    for (int64_t b = 0; b < nn; b += 16) {
      __builtin_prefetch(c.kv.k_scale + so + b);
      __builtin_prefetch(c.kv.v_scale + so + b);
    }
  }
}

// A step's scores: sc[g * kStepKeys + j] for its keys j < nj, given as runs of keys (one per
// page) with their rows' scales (int8 / fp8; else nullptr); the step's max of each head to smx.
// pmx: G floats of work space.
template <class Ops, class T>
void step_scores(const float* q, int64_t G, const PageRun<T>* runs, const float* const* scales, int64_t n_runs,
                 int64_t nj, int64_t d, float scale, float* sc, float* smx, float* pmx) {
  constexpr int64_t L = kStepKeys;
  constexpr bool kRuns =
      requires(const PageRun<T>* r, float* o, int64_t i) { Ops::scores_runs(q, i, i, r, scales, i, i, 1.0f, o, i); };
  bool whole = false;  // the Ops took the step's runs at once
  if constexpr (kRuns) {
    static_assert(kStepMax<Ops>, "scores_runs leaves the max to max_of");
    whole = Ops::scores_runs(q, d, G, runs, kv_scaled_v<T> ? scales : nullptr, n_runs, d, scale, sc, L);
  }
  if (!whole) {
    std::fill(smx, smx + G, -std::numeric_limits<float>::infinity());
    for (int64_t r = 0; r < n_runs; ++r) {
      page_ahead<Ops>(runs[r]);
      page_scores<Ops, T>(q, d, G, runs[r].rows, runs[r].ld, runs[r].n, d, scale, sc + runs[r].off, L,
                          kStepMax<Ops> ? nullptr : pmx);
      if constexpr (!kv_scaled_v<T> && !kStepMax<Ops>)
        for (int64_t g = 0; g < G; ++g) smx[g] = std::max(smx[g], pmx[g]);
    }
    pages_ahead_done<Ops, T>();
    if constexpr (kv_scaled_v<T>) {
      // The keys' scales turn the dot products of the codes into scores; the max follows them.
      for (int64_t r = 0; r < n_runs; ++r)
        for (int64_t g = 0; g < G; ++g) {
          float* x = sc + g * L + runs[r].off;
          if constexpr (kStepMax<Ops>) mul_to<Ops>(x, x, scales[r], runs[r].n);
          else smx[g] = std::max(smx[g], mul_max<Ops>(x, scales[r], runs[r].n));
        }
    }
  }
  if constexpr (kStepMax<Ops>)
    for (int64_t g = 0; g < G; ++g) smx[g] = Ops::max_of(sc + g * L, nj);
}

// acc[g] += the step's values weighed by w (row g at w + g * kStepKeys), given as runs of values
// with their rows' scales (int8 / fp8: the weights times the scales, to pv first unless the Ops takes them).
template <class Ops, class T>
void step_values(float* acc, int64_t G, const PageRun<T>* runs, const float* const* scales, int64_t n_runs,
                 const float* w, float* pv, int64_t vd) {
  constexpr int64_t L = kStepKeys;
  constexpr bool kRuns = requires(const PageRun<T>* r, int64_t i) { Ops::axpy_runs(acc, i, i, r, scales, i, w, i, i); };
  if constexpr (kRuns)
    if (Ops::axpy_runs(acc, vd, G, runs, kv_scaled_v<T> ? scales : nullptr, n_runs, w, L, vd)) return;
  if constexpr (kv_scaled_v<T>) {
    for (int64_t r = 0; r < n_runs; ++r)
      for (int64_t g = 0; g < G; ++g) mul_to<Ops>(pv + g * L + runs[r].off, w + g * L + runs[r].off, scales[r], runs[r].n);
    w = pv;
  }
  for (int64_t r = 0; r < n_runs; ++r) {
    page_ahead<Ops>(runs[r]);
    page_axpy<Ops, T>(acc, vd, G, runs[r].rows, runs[r].ld, w + runs[r].off, L, runs[r].n, vd);
  }
  pages_ahead_done<Ops, T>();
}

// Attention logit soft-capping (Gemma 2): the step's scores of G heads (row g at sc + g * ld, n of
// them) become cap * tanh(score / cap), and each head's step max the max of its capped scores.
// Ops::softcap(x, n, cap) when the ISA has a vector form, else std::tanh.
template <class Ops>
void softcap_step(float* sc, int64_t ld, int64_t G, int64_t n, float cap, float* smx) {
  for (int64_t g = 0; g < G; ++g) {
    float* x = sc + g * ld;
    if constexpr (requires { Ops::softcap(x, n, cap); }) {
      Ops::softcap(x, n, cap);
    } else {
      for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
    }
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
    smx[g] = m;
  }
}

// The page runs of keys [kb, ke) of KV head kvh (one per page, column `off` counted from kb),
// each with the same slots of the next step's page to prefetch (keys [ke, min(k_end, ke + kStepKeys))),
// and int8 / fp8 rows' scales; those of the next step are prefetched here.
template <class T>
void step_runs(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t kb, int64_t ke, int64_t k_end,
               std::vector<PageRun<T>>& kruns, std::vector<PageRun<T>>& vruns, std::vector<const float*>& kscales,
               std::vector<const float*>& vscales) {
  constexpr bool kScaled = kv_scaled_v<T>;
  const int64_t ps = c.kv.page_size, kr = c.kv.k_row_stride(), vr = c.kv.v_row_stride();
  kruns.clear(), vruns.clear(), kscales.clear(), vscales.clear();
  const int64_t next0 = ke, next1 = std::min(k_end, ke + kStepKeys);  // the next step's keys
  if constexpr (kScaled)
    if (next0 < next1) prefetch_scales(c, seq, kvh, next0, next1);
  for (int64_t pi = kb / ps, jb = kb; jb < ke; ++pi) {
    const int64_t j0 = pi * ps, je = std::min(j0 + ps, ke), page = seq.pages[pi], slot = kvh * ps + jb - j0;
    PageRun<T> k{static_cast<const T*>(c.kv.k) + page * c.kv.k_page_stride() + slot * kr, kr, je - jb, jb - kb};
    PageRun<T> v{static_cast<const T*>(c.kv.v) + page * c.kv.v_page_stride() + slot * vr, vr, je - jb, jb - kb};
    // The next step's page at this page's place: keys [a0, a1).
    const int64_t a0 = std::max(next0, jb + kStepKeys), a1 = std::min(next1, je + kStepKeys);
    if (a0 < a1) {
      const int64_t pa = a0 / ps, sa = kvh * ps + a0 - pa * ps, na = std::min(a1, (pa + 1) * ps) - a0;
      k.ahead = reinterpret_cast<const char*>(static_cast<const T*>(c.kv.k) + seq.pages[pa] * c.kv.k_page_stride() + sa * kr);
      v.ahead = reinterpret_cast<const char*>(static_cast<const T*>(c.kv.v) + seq.pages[pa] * c.kv.v_page_stride() + sa * vr);
      k.ahead_bytes = na * kr * int64_t(sizeof(T));
      v.ahead_bytes = na * vr * int64_t(sizeof(T));
    }
    kruns.push_back(k);
    vruns.push_back(v);
    if constexpr (kScaled) {
      kscales.push_back(c.kv.k_scale + page * c.kv.scale_page_stride() + slot);
      vscales.push_back(c.kv.v_scale + page * c.kv.scale_page_stride() + slot);
    }
    jb = je;
  }
}

// The softmax of one step of one row, given its scores (G heads, head g's nj at sc + g * ld) and
// their maxima smx: the scores are softcapped first if the model caps them, then exps(smx, sums)
// takes exp(score - smx[g]) of each (to wherever the Ops wants its weights) and their sums; the
// partial's max and sum move on, and corr[g] is what the running weighted sums must be multiplied
// by (their rescale; applied here when acc is given).
template <class Ops, class Exps>
void step_softmax_with(const AttnParams& p, float* sc, int64_t ld, int64_t G, int64_t nj, float* part, float* acc,
                       int64_t vd, float* smx, float* sums, float* corr, Exps&& exps) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* mx = part;
  float* den = part + G;
  if (p.softcap > 0) softcap_step<Ops>(sc, ld, G, nj, p.softcap, smx);
  // The new running max of every head, then the exponentials of all heads in one pass (independent
  // chains for the core to overlap), then the rescale of the sums.
  for (int64_t g = 0; g < G; ++g) smx[g] = std::max(mx[g], smx[g]);
  exps(smx, sums);
  for (int64_t g = 0; g < G; ++g) {
    const float m_new = smx[g];
    // exp(0) is 1 exactly: skip the call when the running max did not move (most steps).
    corr[g] = mx[g] == neg_inf ? 0.0f : mx[g] == m_new ? 1.0f : std::exp(mx[g] - m_new);
    if (acc && corr[g] != 1.0f) Ops::scale(acc + g * vd, corr[g], vd);
    den[g] = den[g] * corr[g] + sums[g];
    mx[g] = m_new;
  }
}

// step_softmax_with, the exponentials in place (sc holds the weights after).
template <class Ops>
void step_softmax(const AttnParams& p, float* sc, int64_t ld, int64_t G, int64_t nj, float* part, float* acc,
                  int64_t vd, float* smx, float* sums, float* corr) {
  step_softmax_with<Ops>(p, sc, ld, G, nj, part, acc, vd, smx, sums, corr, [&](const float* shift, float* sum) {
    if constexpr (requires { Ops::exp_sub_sum_heads(sc, ld, G, nj, shift, sum); }) {
      Ops::exp_sub_sum_heads(sc, ld, G, nj, shift, sum);
    } else {
      for (int64_t g = 0; g < G; ++g) sum[g] = Ops::exp_sub_sum(sc + g * ld, nj, shift[g]);
    }
  });
}

// One step of the online softmax: the partial of heads [g0, g0 + G) of KV head kvh for query
// row `qrow` takes keys [kb, ke), all in one step (kStepKeys): scores of all G heads for those
// keys, then one rescale of the running sums, then the values. A row's result is the same
// sequence of steps over each key chunk, whichever job runs it and whatever it interleaves the
// steps with. k_end > 0: prefetch the next step's keys and values (up to that key) while this one
// is computed.
template <class Ops, class T>
void partial_step(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G, const float* qrow,
                  int64_t kb, int64_t ke, int64_t k_end, float* part, const AttnWork& w) {
  const int64_t hd = c.p.head_dim, vd = c.kv.value_dim();
  const int64_t h0 = kvh * (c.p.n_heads / c.p.n_kv_heads) + g0;
  float* smx = w.pmx;  // the step's max of each head, then the new running max
  float* sums = w.pmx + G;
  float* corr = w.pmx + 2 * G;
  thread_local std::vector<PageRun<T>> kruns, vruns;
  thread_local std::vector<const float*> kscales, vscales;
  step_runs<T>(c, seq, kvh, kb, ke, k_end, kruns, vruns, kscales, vscales);
  const int64_t n_runs = int64_t(kruns.size());
  step_scores<Ops, T>(qrow + h0 * hd, G, kruns.data(), kscales.data(), n_runs, ke - kb, hd, c.p.scale, w.sc, smx, sums);
  step_softmax<Ops>(c.p, w.sc, kStepKeys, G, ke - kb, part, part + 2 * G, vd, smx, sums, corr);
  step_values<Ops, T>(part + 2 * G, G, vruns.data(), vscales.data(), n_runs, w.sc, w.pv, vd);
}

// One query row's step for Ops::rows_step: keys [kb, ke) (inside one window of kStepKeys keys
// from a multiple of kStepKeys) into the partial `part`; row: the row's index in its job (a
// chunk job's row is 0); k_end > 0: prefetch the next step's pages up to that key. first / last:
// the step starts / ends the row's key chunk (the partial was just initialised / is read after
// it), so an Ops may keep a row's running max, sum and weighted sums elsewhere in between (a row
// takes a step in every window from its chunk's first key to its last). st: the row's running
// partial, the merge of its earlier chunks (null in its first chunk, and in a chunk job): an Ops
// whose rows_step returns true has merged each chunk ending in its steps into st itself, as
// merge_partial would (bit for bit), and the driver does not.
struct RowStep {
  int32_t row;  // with the flags, so a step is 56 bytes (a driver writes one per row and window)
  bool first, last;
  const float* q;
  int64_t kb, ke, k_end;
  float* part;
  float* st;
};

// Ops::rows_step, true where it merged the chunks that ended (RowStep::st).
template <class Ops, class T>
bool call_rows_step(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G, const RowStep* rows,
                    int64_t n, const AttnWork& w) {
  if constexpr (std::is_void_v<decltype(Ops::template rows_step<T>(c, seq, kvh, g0, G, rows, n, w))>) {
    Ops::template rows_step<T>(c, seq, kvh, g0, G, rows, n, w);
    return false;
  } else {
    return Ops::template rows_step<T>(c, seq, kvh, g0, G, rows, n, w);
  }
}

// An Ops may take the steps of several rows of a job at once (rows_step: the rows of one window,
// consecutive rows of the job, in order), each row's bits those it gets stepping alone: then a
// chunk job's steps, too, go through it, one row at a time.
template <class Ops, class T>
inline constexpr bool kRowsStep = requires(const AttnCtx& c, const AttnSeq& s, const RowStep* r, const AttnWork& w) {
  Ops::template rows_step<T>(c, s, int64_t(0), int64_t(0), int64_t(0), r, int64_t(0), w);
};

// The end of the step that key k is in, clipped to k1.
inline int64_t step_end(int64_t k, int64_t k1) { return std::min(k1, (k / kStepKeys + 1) * kStepKeys); }

// The partial softmax of heads [g0, g0 + G) of KV head kvh for query row `qrow` over keys
// [k0, k1): part = [max][sum][weighted V] (part_floats(G, vd)), step by step. k_end: the row's
// last key + 1 (each step prefetches the next up to it, across the chunk's end: the next chunk
// reads it).
template <class Ops, class T>
void chunk_partial(const AttnCtx& c, const AttnSeq& seq, int64_t kvh, int64_t g0, int64_t G, const float* qrow,
                   int64_t k0, int64_t k1, int64_t k_end, float* part, const AttnWork& w) {
  partial_init(part, G, c.kv.value_dim());
  for (int64_t kb = k0; kb < k1;) {
    const int64_t ke = step_end(kb, k1);
    if constexpr (kRowsStep<Ops, T>) {
      const RowStep r{0, kb == k0, ke == k1, qrow, kb, ke, k_end, part, nullptr};
      call_rows_step<Ops, T>(c, seq, kvh, g0, G, &r, 1, w);
    } else {
      partial_step<Ops, T>(c, seq, kvh, g0, G, qrow, kb, ke, k_end, part, w);
    }
    kb = ke;
  }
}

// st = st merged with partial p (the later chunk), both of G heads. Not inlined, so every
// merge of a row, whichever job runs it, is the same machine code and gives the same bits.
// An Ops may merge in its own way (merge_partials).
template <class Ops>
[[gnu::noinline]] void merge_partial(float* st, const float* p, int64_t G, int64_t vd) {
  if constexpr (requires { Ops::merge_partials(st, p, G, vd); }) {
    Ops::merge_partials(st, p, G, vd);
    return;
  }
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

// Output heads [h0, h0 + G) of a row from its (merged) partial; `sinks`: those heads' sink logits
// (AttnParams::sinks + h0) or null.
inline void finish_row(const float* st, int64_t G, int64_t vd, const float* sinks, float* oh) {
  for (int64_t g = 0; g < G; ++g) {
    const float den = sinks ? st[G + g] + std::exp(sinks[g] - st[g]) : st[G + g];
    const float inv = 1.0f / den;
    for (int64_t d = 0; d < vd; ++d) oh[g * vd + d] = st[2 * G + g * vd + d] * inv;
  }
}

template <class Ops, class T>
void attention_job_typed(const AttnCtx& c, const AttnJob& j, float* parts) {
  const AttnSeq& seq = c.seqs[j.s];
  const int64_t vd = c.kv.value_dim();
  const int64_t G = j.g1 - j.g0, pf = part_floats(G, vd);
  const int64_t h0 = j.kvh * (c.p.n_heads / c.p.n_kv_heads) + j.g0;
  const float* sinks = c.p.sinks ? c.p.sinks + h0 : nullptr;

  // Work space: a page's scores and weights, then a running partial and a chunk's partial for
  // each row of the job.
  const int64_t n_rows = j.kind == AttnJob::kRows ? j.i1 - j.i0 : 1;
  if constexpr (requires { Ops::begin_job(n_rows); }) Ops::begin_job(n_rows);
  thread_local std::vector<float> scratch;
  const size_t need = size_t(G * (2 * kStepKeys + 3) + pf * (1 + 2 * n_rows));
  if (scratch.size() < need) scratch.resize(need);
  AttnWork w{scratch.data(), nullptr, nullptr, nullptr};
  w.pmx = w.sc + G * kStepKeys;
  w.pv = w.pmx + 3 * G;
  w.tmp = w.pv + G * kStepKeys;
  float* st = w.tmp + pf;  // the row's running partial

  switch (j.kind) {
    case AttnJob::kChunk: {
      const KeyChunks kc = key_chunks(seq, j.i0, c.p);
      int64_t k0, k1;
      kc.range(j.chunk, k0, k1);
      chunk_partial<Ops, T>(c, seq, j.kvh, j.g0, G, c.q + (seq.q_row + j.i0) * c.ldq, k0, k1, kc.n_keys, parts + j.part,
                            w);
      return;
    }
    case AttnJob::kMerge: {
      const KeyChunks kc = key_chunks(seq, j.i0, c.p);
      std::copy(parts + j.part, parts + j.part + pf, st);
      for (int64_t ch = 1; ch < kc.count; ++ch) merge_partial<Ops>(st, parts + j.part + ch * pf, G, vd);
      finish_row(st, G, vd, sinks, c.out + (seq.q_row + j.i0) * c.ldo + h0 * vd);
      return;
    }
    case AttnJob::kRows: {
      // The rows walk the steps together: a step's keys and values come from memory once for all
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
        u.kc = key_chunks(seq, j.i0 + r, c.p);
        u.ch = 0;
        u.kc.range(0, u.k0, u.k1);
        u.next = u.k0;
        u.q = c.q + (seq.q_row + j.i0 + r) * c.ldq;
        u.st = u.cur = st + 2 * r * pf;
        partial_init(u.st, G, vd);
        lo = std::min(lo, u.k0);
        hi = std::max(hi, u.kc.n_keys);
      }
      // After a row's step to key e: at its chunk's end, fold the chunk in, start the next or write
      // the row. False while the chunk goes on.
      auto stepped = [&](int64_t r, int64_t e, bool merged) {
        Cursor& u = rows[size_t(r)];
        u.next = e;
        if (e < u.k1) return false;
        if (u.ch > 0 && !merged) merge_partial<Ops>(u.st, u.cur, G, vd);
        if (++u.ch < u.kc.count) {
          u.kc.range(u.ch, u.k0, u.k1);
          u.next = u.k0;
          u.cur = u.st + pf;
          partial_init(u.cur, G, vd);
        } else {
          finish_row(u.st, G, vd, sinks, c.out + (seq.q_row + j.i0 + r) * c.ldo + h0 * vd);
        }
        return true;
      };
      thread_local std::vector<RowStep> steps;
      for (int64_t s0 = lo / kStepKeys * kStepKeys; s0 < hi; s0 += kStepKeys) {
        const int64_t s1 = s0 + kStepKeys;
        steps.clear();
        for (int64_t r = 0; r < n_rows; ++r) {
          Cursor& u = rows[size_t(r)];
          while (u.ch < u.kc.count && u.next < s1) {
            const int64_t e = step_end(u.next, u.k1);
            // The last row sees the most keys: it fetches the pages ahead for all of them.
            const int64_t k_end = r == n_rows - 1 ? hi : 0;
            if constexpr (kRowsStep<Ops, T>) {
              // Chunks end on multiples of kKeyChunk, so a row has at most one step in a window.
              steps.push_back({int32_t(r), u.next == u.k0, e == u.k1, u.q, u.next, e, k_end, u.cur,
                               u.ch > 0 ? u.st : nullptr});
              break;
            } else {
              partial_step<Ops, T>(c, seq, j.kvh, j.g0, G, u.q, u.next, e, k_end, u.cur, w);
              if (!stepped(r, e, false)) break;
            }
          }
        }
        if constexpr (kRowsStep<Ops, T>) {
          if (steps.empty()) continue;
          const bool merged = call_rows_step<Ops, T>(c, seq, j.kvh, j.g0, G, steps.data(), int64_t(steps.size()), w);
          for (const RowStep& st : steps) stepped(st.row, st.ke, merged);
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

// The job for a bf16, int8 or fp8 cache on Ops (one whose rows_step takes only those); an fp32
// cache's goes to f32, another level's job.
template <class Ops>
void compact_attention_job(const AttnCtx& c, const AttnJob& j, float* parts, AttnJobFn f32) {
  switch (c.kv.elem) {
    case KVElem::kF32: f32(c, j, parts); break;
    case KVElem::kBF16: attention_job_typed<Ops, bf16_t>(c, j, parts); break;
    case KVElem::kInt8: attention_job_typed<Ops, int8_t>(c, j, parts); break;
    case KVElem::kFp8E4M3: attention_job_typed<Ops, fp8_e4m3_t>(c, j, parts); break;
    case KVElem::kFp8E5M2: attention_job_typed<Ops, fp8_e5m2_t>(c, j, parts); break;
  }
}

}  // namespace dpserve::kernels
