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
#include "kernels/attention.h"

namespace dpserve::kernels {

// One cached element as fp32 (bf16 is stored as bf16_t, int8 as int8_t).
inline float kv_to_f32(float x) { return x; }
inline float kv_to_f32(bf16_t x) { return bf16_to_f32(x); }
inline float kv_to_f32(int8_t x) { return float(x); }

struct AttnCtx {
  const float* q;
  int64_t ldq;
  const AttnSeq* seqs;
  KVLayerView kv;
  AttnParams p;
  float* out;
  int64_t ldo;
};

// Queries [i0, i1) of sequence `s`, for the query heads of KV head `kvh`.
using AttnRowsFn = void (*)(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1);

namespace portable {
void attention_rows(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1);
}
namespace avx2 {
void attention_rows(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1);
}
namespace avx512 {
void attention_rows(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1);
}

// Online softmax over the pages, one page of keys at a time: scores of all
// heads of the group for the page, one rescale of the running sums per page.
//
// T is the cache's element type (float, bf16_t, int8_t); Ops's primitives that read keys or
// values are templates over it and widen each element to fp32 as they load it, so the cache is
// read in its compact form. An int8 row's scale s is applied outside them: a score is
// s_k * (q . k_q), a value row's weight p * s_v (the softmax sums use p itself).
//
// Ops: scores(q, k, ldk, n, d, scale, out) (out[j] = (q . k[j * ldk]) * scale for j < n, each
// in one fixed order whatever n; returns their max), axpy_rows(acc, v, ldv, p, n, d)
// (acc += sum_j p[j] v[j * ldv], j in order, acc held in registers across the page),
// scale(acc, c, d), exp_sub_sum(x, n, shift) (x = exp(x - shift), returns the sum).
// Optionally scores_heads / axpy_heads: the same for the G query heads of a KV head at once
// (head g's q at q + g * ldq, its scores at out + g * ldo, its sums at acc + g * lda), each
// head's every value bit for bit what scores / axpy_rows give it alone: they only let the
// heads share the loads of a page's keys and values.
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

template <class Ops, class T>
void attention_rows_typed(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1) {
  constexpr bool kScaled = std::is_same_v<T, int8_t>;
  const AttnSeq& seq = c.seqs[s];
  const int64_t hd = c.p.head_dim, vd = c.kv.value_dim(), ps = c.kv.page_size;
  const int64_t kr = c.kv.k_row_stride(), vr = c.kv.v_row_stride();
  const int64_t group = c.p.n_heads / c.p.n_kv_heads;
  const int64_t h0 = kvh * group;
  const float neg_inf = -std::numeric_limits<float>::infinity();

  thread_local std::vector<float> scratch;
  const size_t need = size_t(group * (ps + vd + 3) + (kScaled ? group * ps : 0));
  if (scratch.size() < need) scratch.resize(need);
  float* sc = scratch.data();              // [group][ps] scores of one page
  float* acc = sc + group * ps;            // [group][vd] weighted sums of V
  float* mx = acc + group * vd;            // [group] running max
  float* den = mx + group;                 // [group] running denominator
  float* pmx = den + group;                // [group] max of this page's scores
  float* pv = pmx + group;                 // int8: [group][ps] weights times the values' scales
  const T* kbase = static_cast<const T*>(c.kv.k);
  const T* vbase = static_cast<const T*>(c.kv.v);

  for (int64_t i = i0; i < i1; ++i) {
    const int64_t n_keys = seq.pos0 + i + 1;
    const int64_t first = c.p.window > 0 ? std::max<int64_t>(0, n_keys - c.p.window) : 0;
    const float* qrow = c.q + (seq.q_row + i) * c.ldq;
    std::fill(acc, acc + group * vd, 0.0f);
    std::fill(mx, mx + group, neg_inf);
    std::fill(den, den + group, 0.0f);
    for (int64_t j0 = first - first % ps; j0 < n_keys; j0 += ps) {
      const int64_t jb = std::max(j0, first);  // first visible key of this page
      const int64_t nj = std::min(j0 + ps, n_keys) - jb;
      const int64_t page = seq.pages[j0 / ps];
      const T* kp = kbase + page * c.kv.k_page_stride() + (kvh * ps + jb - j0) * kr;
      const T* vp = vbase + page * c.kv.v_page_stride() + (kvh * ps + jb - j0) * vr;
      if (j0 + ps < n_keys) {
        // Pages are scattered over the pool, so the hardware prefetcher cannot guess the next
        // one: fetch its keys and values while this page is computed.
        const int64_t next = seq.pages[j0 / ps + 1];
        const int64_t nn = std::min(ps, n_keys - j0 - ps);
        const char* kn = reinterpret_cast<const char*>(kbase + next * c.kv.k_page_stride() + kvh * ps * kr);
        const char* vn = reinterpret_cast<const char*>(vbase + next * c.kv.v_page_stride() + kvh * ps * vr);
        for (int64_t b = 0; b < nn * kr * int64_t(sizeof(T)); b += 64) __builtin_prefetch(kn + b);
        for (int64_t b = 0; b < nn * vr * int64_t(sizeof(T)); b += 64) __builtin_prefetch(vn + b);
      }
      page_scores<Ops, T>(qrow + h0 * hd, hd, group, kp, kr, nj, hd, c.p.scale, sc, ps, pmx);
      const float* vsc = nullptr;
      if constexpr (kScaled) {
        // The keys' scales turn the integer dot products into scores; the max follows them.
        const int64_t so = page * c.kv.scale_page_stride() + kvh * ps + jb - j0;
        const float* ksc = c.kv.k_scale + so;
        vsc = c.kv.v_scale + so;
        for (int64_t g = 0; g < group; ++g) pmx[g] = mul_max<Ops>(sc + g * ps, ksc, nj);
      }
      for (int64_t g = 0; g < group; ++g) {
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
        for (int64_t g = 0; g < group; ++g) mul_to<Ops>(pv + g * ps, sc + g * ps, vsc, nj);
        page_axpy<Ops, T>(acc, vd, group, vp, vr, pv, ps, nj, vd);
      } else {
        page_axpy<Ops, T>(acc, vd, group, vp, vr, sc, ps, nj, vd);
      }
    }
    float* orow = c.out + (seq.q_row + i) * c.ldo;
    for (int64_t g = 0; g < group; ++g) {
      float* oh = orow + (h0 + g) * vd;
      const float inv = 1.0f / den[g];
      for (int64_t d = 0; d < vd; ++d) oh[d] = acc[g * vd + d] * inv;
    }
  }
}

// The row kernel for the view's element type.
template <class Ops>
void attention_rows_impl(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1) {
  switch (c.kv.elem) {
    case KVElem::kF32: attention_rows_typed<Ops, float>(c, s, kvh, i0, i1); break;
    case KVElem::kBF16: attention_rows_typed<Ops, bf16_t>(c, s, kvh, i0, i1); break;
    case KVElem::kInt8: attention_rows_typed<Ops, int8_t>(c, s, kvh, i0, i1); break;
  }
}

}  // namespace dpserve::kernels
