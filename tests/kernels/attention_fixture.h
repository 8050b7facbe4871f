// Test fixture shared by the attention tests: a paged KV cache of random rows (pages scrambled,
// rows of different magnitudes) encoded as fp32 / bf16 / int8 / fp8 by the test's own encoder, queries,
// and attention in float64 from the definition.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/attention.h"
#include "test_util.h"

namespace dpserve {
// Test names and parameters print the element type by name (gtest finds this by argument lookup).
inline void PrintTo(KVElem e, std::ostream* os) { *os << kv_elem_name(e); }
}  // namespace dpserve

namespace dpserve::attn_fixture {

// The encoders, written here from the definitions (not the library's kv_codec).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (the test's values are finite)
  return uint16_t(u >> 16);
}
inline float from_bf16(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The non-negative values of an fp8 format with E exponent and M mantissa bits, indexed by code
// (OCP FP8: bias 2^(E-1) - 1, subnormals at exponent field 0; E4M3's largest finite code 0x7e =
// 448, E5M2's 0x7b = 57344), from the formula.
inline std::vector<double> fp8_values(int E, int M) {
  const int bias = (1 << (E - 1)) - 1, top = E == 4 ? 0x7e : 0x7b;
  std::vector<double> v;
  for (int c = 0; c <= top; ++c) {
    const int e = c >> M, m = c & ((1 << M) - 1);
    v.push_back(e == 0 ? std::ldexp(double(m), 1 - bias - M) : std::ldexp(double((1 << M) + m), e - bias - M));
  }
  return v;
}
// The code nearest |x| (ties to the even code, the one whose mantissa ends in 0), by search; the
// sign is bit 7. Values past the largest saturate to it.
inline uint8_t fp8_nearest(const std::vector<double>& vals, double x) {
  const double a = std::fabs(x);
  size_t best = 0;
  for (size_t c = 1; c < vals.size(); ++c) {
    const double d = std::fabs(vals[c] - a), db = std::fabs(vals[best] - a);
    if (d < db || (d == db && c % 2 == 0)) best = c;
  }
  return uint8_t(best | (std::signbit(x) ? 0x80 : 0));
}

struct Case {
  int64_t n_heads, n_kv, head_dim, page_size;
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (pos0, n_q)
  int64_t window = 0;
  int64_t v_dim = 0;    // 0: head_dim
  bool latent = false;  // MLA: V is the first v_dim values of the key row (one row, one scale)
  std::vector<float> sinks = {};  // one logit per query head (gpt-oss), or none
  float softcap = 0;     // > 0: scores become softcap * tanh(score / softcap) (Gemma 2)
  bool chunked = false;  // Llama 4: the window is the query's aligned chunk of `window` positions
};

// A cache of `pages` pages holding the fp32 values `k` / `v` ([page][kv head][slot][row]),
// encoded as `elem`; `kd` / `vd` are the values the encoded cache holds, widened back to fp32.
struct Cache {
  KVElem elem;
  std::vector<float> k, v, kd, vd;       // original, and as held
  std::vector<uint16_t> k16, v16;
  std::vector<uint8_t> k8, v8;           // int8 or fp8 codes
  std::vector<float> ks, vs;             // int8 / fp8 scales, one per row
  KVLayerView view;
};

inline void encode(KVElem e, const std::vector<float>& x, int64_t row, std::vector<float>& held, std::vector<uint16_t>& b16,
            std::vector<uint8_t>& i8, std::vector<float>& scales) {
  const int64_t rows = int64_t(x.size()) / row;
  held.resize(x.size());
  if (e == KVElem::kBF16) {
    b16.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) held[i] = from_bf16(b16[i] = to_bf16(x[i]));
  } else if (e == KVElem::kInt8) {
    i8.resize(x.size());
    scales.resize(size_t(rows));
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0;
      for (int64_t d = 0; d < row; ++d) amax = std::max(amax, std::fabs(x[size_t(r * row + d)]));
      const float s = amax / 127.0f;
      scales[size_t(r)] = s;
      for (int64_t d = 0; d < row; ++d) {
        const size_t i = size_t(r * row + d);
        const int8_t code = int8_t(std::lround(double(x[i]) / double(s)));
        i8[i] = uint8_t(code);
        held[i] = float(code) * s;
      }
    }
  } else if (e == KVElem::kFp8E4M3 || e == KVElem::kFp8E5M2) {
    const bool e4 = e == KVElem::kFp8E4M3;
    const std::vector<double> vals = e4 ? fp8_values(4, 3) : fp8_values(5, 2);
    i8.resize(x.size());
    scales.resize(size_t(rows));
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0;
      for (int64_t d = 0; d < row; ++d) amax = std::max(amax, std::fabs(x[size_t(r * row + d)]));
      const float s = amax / float(vals.back());  // the row's largest value gets the largest code
      scales[size_t(r)] = s;
      for (int64_t d = 0; d < row; ++d) {
        const size_t i = size_t(r * row + d);
        i8[i] = fp8_nearest(vals, double(x[i]) / double(s));
        held[i] = float((i8[i] & 0x80 ? -1 : 1) * vals[i8[i] & 0x7f]) * s;
      }
    }
  } else {
    held = x;
  }
}

struct Built {
  Case c;
  Cache cache;
  std::vector<float> q;
  std::vector<std::vector<int32_t>> tables;
  std::vector<AttnSeq> seqs;
  AttnParams p;
  int64_t rows = 0, ld = 0;
};

inline Built build(const Case& c, KVElem elem, uint32_t seed) {
  Built b;
  b.c = c;
  b.p = AttnParams{c.n_heads, c.n_kv, c.head_dim, float(1.0 / std::sqrt(double(c.head_dim))), c.window};
  if (!b.c.sinks.empty()) b.p.sinks = b.c.sinks.data();
  b.p.softcap = c.softcap;
  b.p.chunked = c.chunked;
  const int64_t vdim = c.v_dim ? c.v_dim : c.head_dim;
  int64_t total = 0;
  for (auto [pos0, nq] : c.seqs) total += (pos0 + nq + c.page_size - 1) / c.page_size;
  const int64_t pool = 2 * total + 1;
  std::mt19937 rng(seed);
  std::vector<int32_t> perm(static_cast<size_t>(pool));
  for (int64_t i = 0; i < pool; ++i) perm[size_t(i)] = int32_t(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  Cache& k = b.cache;
  k.elem = elem;
  // Rows of very different magnitudes, so each int8 / fp8 row needs its own scale.
  const int64_t krows = pool * c.n_kv * c.page_size;
  k.k = test::random_floats(krows * c.head_dim, seed + 1);
  k.v = test::random_floats(krows * vdim, seed + 2);
  for (int64_t r = 0; r < krows; ++r) {
    const float m = std::ldexp(1.0f, int(r % 4) - 2);
    for (int64_t d = 0; d < c.head_dim; ++d) k.k[size_t(r * c.head_dim + d)] *= m;
    for (int64_t d = 0; d < vdim; ++d) k.v[size_t(r * vdim + d)] *= std::ldexp(1.0f, int(r % 5) - 2);
  }
  encode(elem, k.k, c.head_dim, k.kd, k.k16, k.k8, k.ks);
  if (!c.latent) encode(elem, k.v, vdim, k.vd, k.v16, k.v8, k.vs);
  k.view = KVLayerView{nullptr, nullptr, c.page_size, c.n_kv, c.head_dim, c.v_dim};
  k.view.elem = elem;
  switch (elem) {
    case KVElem::kF32: k.view.k = k.kd.data(); k.view.v = k.vd.data(); break;
    case KVElem::kBF16: k.view.k = k.k16.data(); k.view.v = k.v16.data(); break;
    case KVElem::kInt8:
    case KVElem::kFp8E4M3:
    case KVElem::kFp8E5M2:
      k.view.k = k.k8.data();
      k.view.v = k.v8.data();
      k.view.k_scale = k.ks.data();
      k.view.v_scale = k.vs.data();
      break;
  }
  if (c.latent) {  // the value is the key row's prefix: same bytes, same scale
    k.v = k.k;
    k.vd = k.kd;
    k.view.v = k.view.k;
    k.view.v_row = c.head_dim;
    k.view.v_scale = k.view.k_scale;
  }
  int64_t next = 0;
  for (auto [pos0, nq] : c.seqs) {
    std::vector<int32_t> t;
    for (int64_t j = 0; j < (pos0 + nq + c.page_size - 1) / c.page_size; ++j) t.push_back(perm[size_t(next++)]);
    b.tables.push_back(t);
  }
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    b.seqs.push_back(AttnSeq{b.rows, c.seqs[s].second, c.seqs[s].first, b.tables[s].data()});
    b.rows += c.seqs[s].second;
  }
  b.ld = c.n_heads * std::max(c.head_dim, vdim) + 3;
  b.q = test::random_floats(b.rows * b.ld, seed + 3, -2.0f, 2.0f);
  return b;
}

// The definition in float64 over K / V given as fp32 arrays in the cache's layout; with
// bf16_queries, each query element rounded to bf16 first (what the kernels multiply where
// attention_uses_bf16_products).
inline std::vector<double> naive(const Built& b, const std::vector<float>& K, const std::vector<float>& V,
                                 bool bf16_queries = false) {
  const Case& c = b.c;
  std::vector<double> out(size_t(b.rows * b.ld), 0.0);
  const int64_t hd = c.head_dim, vdim = c.v_dim ? c.v_dim : hd, v_row = c.latent ? hd : vdim;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const auto [pos0, nq] = c.seqs[s];
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t g = h / (c.n_heads / c.n_kv), row = b.seqs[s].q_row + i;
        const int64_t p = pos0 + i;
        const int64_t first = c.window <= 0 ? 0 : c.chunked ? p - p % c.window : std::max<int64_t>(0, p + 1 - c.window);
        auto slot = [&](int64_t j) {
          return (b.tables[s][size_t(j / c.page_size)] * c.n_kv + g) * c.page_size + j % c.page_size;
        };
        std::vector<double> w(size_t(pos0 + i + 1), -INFINITY);
        for (int64_t j = first; j <= pos0 + i; ++j) {
          double d = 0;
          for (int64_t e = 0; e < hd; ++e) {
            const float qe = b.q[size_t(row * b.ld + h * hd + e)];
            d += double(bf16_queries ? from_bf16(to_bf16(qe)) : qe) * K[size_t(slot(j) * hd + e)];
          }
          w[size_t(j)] = d / std::sqrt(double(hd));
          if (c.softcap > 0) w[size_t(j)] = c.softcap * std::tanh(w[size_t(j)] / c.softcap);
        }
        // A sink is one more score in the softmax, of a key whose value is zero.
        if (!c.sinks.empty()) w.push_back(c.sinks[size_t(h)]);
        const double mx = *std::max_element(w.begin(), w.end());
        double den = 0;
        for (double& x : w) den += (x = std::exp(x - mx));
        for (int64_t j = first; j <= pos0 + i; ++j)
          for (int64_t e = 0; e < vdim; ++e)
            out[size_t(row * b.ld + h * vdim + e)] += w[size_t(j)] / den * V[size_t(slot(j) * v_row + e)];
      }
  }
  return out;
}

inline const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      {4, 2, 33, 5, {{0, 7}, {9, 1}, {3, 11}}},             // odd head dim (masked tails) and page size
      {8, 2, 64, 16, {{37, 1}, {0, 40}, {100, 3}}},         // GQA 4: decode, prefill, extend
      {32, 4, 64, 16, {{0, 5}, {250, 1}}},                  // TinyLlama heads
      {4, 2, 16, 5, {{0, 23}, {40, 1}, {7, 6}}, 11},        // sliding window
      {4, 2, 24, 4, {{5, 3}, {0, 10}}, 0, 40},              // values wider than keys
      {16, 1, 72, 16, {{60, 1}, {0, 33}}, 0, 64, true},     // MLA latent: V = prefix of K, one scale
      // A latent wider than 128: the bf16 level's scores take two key blocks by eight heads.
      {12, 1, 144, 16, {{70, 1}, {0, 37}}, 0, 128, true},
      // Attention sinks (gpt-oss) from well below the scores to well above, with a window.
      {8, 2, 16, 5, {{0, 23}, {40, 1}, {7, 6}}, 11, 0, false, {-3.0f, -1.0f, 0.0f, 0.5f, 1.0f, 2.0f, 3.0f, 6.0f}},
      // Soft-capped scores (a cap near their size, so tanh bends them), with a window and past a chunk.
      {4, 2, 16, 4, {{0, 9}, {13, 2}, {30, 1}}, 3, 0, false, {}, 0.5f},
      {8, 2, 64, 16, {{700, 1}, {0, 40}, {100, 3}}, 0, 0, false, {}, 1.5f},
      // Chunked (Llama 4): chunks across pages and a prefill crossing chunk ends.
      {4, 2, 16, 5, {{0, 23}, {40, 1}, {7, 6}}, 11, 0, false, {}, 0, true},
      // One query head a KV head (MHA, MLA's decompressed form) and three: the bf16 level's
      // softmax fills a vector's lanes with the heads of several rows; a prefill past a key chunk.
      {3, 3, 32, 16, {{0, 300}, {520, 2}}},
      {6, 2, 16, 5, {{0, 21}, {30, 2}}},
      // Decode rows of seven and three heads a KV head over odd head widths: the bf16 level scores
      // them by groups of two and four keys, lanes left empty, the last pair half past the head.
      {14, 2, 33, 5, {{0, 7}, {9, 1}, {70, 1}}},
      {9, 3, 21, 16, {{40, 1}, {0, 9}}},
  };
  return cs;
}

inline std::vector<float> run(KernelIsa isa, const Built& b, const std::vector<AttnSeq>& seqs) {
  std::vector<float> out(size_t(b.rows * b.ld), NAN);
  paged_attention_isa(isa, b.q.data(), b.ld, seqs.data(), int64_t(seqs.size()), b.cache.view, b.p, out.data(), b.ld);
  return out;
}

// Where the kernels weigh the values with bf16-rounded weights (attention_uses_bf16_products),
// an output is sum_j p_j (1 + e_j) v_j / sum_j p_j with |e_j| <= 2^-8 (round to nearest with 8
// significant bits: half a unit in the last place of a number in [1, 2) is 2^-8), so it is off
// by at most 2^-8 max |v| beyond fp32's rounding; elsewhere only the rounding (2e-5 for these
// sizes). A wrong key, pair or weight errs by |v| itself.
inline double held_bound(const Built& b, KernelIsa isa) {
  if (!attention_uses_bf16_products(isa, b.cache.elem)) return 2e-5;
  const std::vector<float>& v = b.c.latent ? b.cache.kd : b.cache.vd;
  double vmax = 0;
  for (float x : v) vmax = std::max(vmax, double(std::fabs(x)));
  return std::ldexp(vmax, -8) + 2e-5;
}

// What a kernel on `isa` is compared with: the float64 definition over the held values, with
// the queries as the kernel rounds them.
inline std::vector<double> naive_held(const Built& b, KernelIsa isa) {
  return naive(b, b.cache.kd, b.cache.vd, attention_uses_bf16_products(isa, b.cache.elem));
}

inline double max_err(const Built& b, const std::vector<float>& got, const std::vector<double>& want) {
  const int64_t vdim = b.c.v_dim ? b.c.v_dim : b.c.head_dim;
  double e = 0;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t x = 0; x < b.c.n_heads * vdim; ++x)
      e = std::max(e, std::fabs(double(got[size_t(r * b.ld + x)]) - want[size_t(r * b.ld + x)]));
  return e;
}

// A test over one cache element type and one group of ISA levels (test::IsaGroup: the vector ones,
// or AMX's tiles, which skip where the CPU has none).
class ElemIsaTest : public ::testing::TestWithParam<std::tuple<KVElem, test::IsaGroup>> {
 protected:
  void SetUp() override {
    isas_ = test::isas_in(std::get<1>(GetParam()));
    DPSERVE_SKIP_IF_NO_ISAS(isas_);
  }
  KVElem elem() const { return std::get<0>(GetParam()); }
  std::vector<KernelIsa> isas_;
};

// The element types given, each with both ISA groups; test names "bf16_vector", "int8_amx", ...
inline auto elems_by_isa_group(std::vector<KVElem> elems) {
  return ::testing::Combine(::testing::ValuesIn(std::move(elems)),
                            ::testing::Values(test::IsaGroup::Vector, test::IsaGroup::Amx));
}
inline std::string elem_isa_name(const ::testing::TestParamInfo<std::tuple<KVElem, test::IsaGroup>>& i) {
  return std::string(kv_elem_name(std::get<0>(i.param))) + "_" + test::isa_group_name(std::get<1>(i.param));
}

}  // namespace dpserve::attn_fixture
