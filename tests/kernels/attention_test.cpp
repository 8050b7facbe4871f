// paged_attention on every ISA level vs a naive float64 attention written here
// from the definition (softmax(q k^T * scale) v, causal, GQA, optional sliding
// window, optional soft-capping of the scores: cap * tanh(s / cap)), over scattered pages; also MLA's latent layout, where the value is the
// first v_dim floats of the key row.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/check.h"
#include "test_util.h"

namespace dpserve {
namespace {

struct Case {
  int64_t n_heads, n_kv, head_dim, page_size;
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (pos0, n_q)
  int64_t window = 0;
  int64_t v_dim = 0;    // 0: head_dim
  bool latent = false;  // V aliases K: value = first v_dim floats of each key row
  float softcap = 0;    // > 0: scores become softcap * tanh(score / softcap) (Gemma 2)
  bool chunked = false; // window is Llama 4's chunk: a query sees its own aligned `window` positions
};

struct Built {
  std::vector<float> k, v, q;
  std::vector<std::vector<int32_t>> tables;
  std::vector<AttnSeq> seqs;
  KVLayerView kv;
  AttnParams p;
  int64_t rows = 0, ld = 0;
};

// A pool with twice the pages needed, handed out in random order so every
// sequence's pages are scattered and interleaved with the others'.
Built build(const Case& c, uint32_t seed) {
  Built b;
  b.p = AttnParams{c.n_heads, c.n_kv, c.head_dim, float(1.0 / std::sqrt(double(c.head_dim))), c.window, c.softcap};
  b.p.chunked = c.chunked;
  const int64_t vd = c.v_dim ? c.v_dim : c.head_dim;
  int64_t total_pages = 0;
  for (auto [pos0, nq] : c.seqs) total_pages += (pos0 + nq + c.page_size - 1) / c.page_size;
  const int64_t pool = 2 * total_pages + 1;
  std::mt19937 rng(seed);
  std::vector<int32_t> perm(pool);
  for (int64_t i = 0; i < pool; ++i) perm[i] = int32_t(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  const int64_t stride = c.n_kv * c.page_size * c.head_dim;
  b.k = test::random_floats(pool * stride, seed + 1);
  b.v = test::random_floats(pool * c.n_kv * c.page_size * vd, seed + 2);
  b.kv = KVLayerView{b.k.data(), b.v.data(), c.page_size, c.n_kv, c.head_dim, c.v_dim};
  if (c.latent) {
    b.kv.v = b.k.data();
    b.kv.v_row = c.head_dim;
  }
  int64_t next = 0;
  for (auto [pos0, nq] : c.seqs) {
    std::vector<int32_t> t;
    for (int64_t j = 0; j < (pos0 + nq + c.page_size - 1) / c.page_size; ++j) t.push_back(perm[next++]);
    b.tables.push_back(t);
  }
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    b.seqs.push_back(AttnSeq{b.rows, c.seqs[s].second, c.seqs[s].first, b.tables[s].data()});
    b.rows += c.seqs[s].second;
  }
  b.ld = c.n_heads * std::max(c.head_dim, vd) + 3;  // padded row stride
  b.q = test::random_floats(b.rows * b.ld, seed + 3, -2.0f, 2.0f);
  return b;
}

// The definition, in float64, reading K/V through the page table by hand.
std::vector<double> naive(const Case& c, const Built& b) {
  std::vector<double> out(b.rows * b.ld, 0.0);
  const int64_t hd = c.head_dim, vd = c.v_dim ? c.v_dim : hd, stride = c.n_kv * c.page_size * hd;
  const int64_t v_row = c.latent ? hd : vd;
  const float* vbase = c.latent ? b.k.data() : b.v.data();
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const auto [pos0, nq] = c.seqs[s];
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t g = h / (c.n_heads / c.n_kv);
        const int64_t row = b.seqs[s].q_row + i;
        // Keys the query at position pos0 + i sees: all earlier ones, the last `window`, or (chunked) those
        // whose position divided by `window` is the query's.
        int64_t first = c.window > 0 ? std::max<int64_t>(0, pos0 + i + 1 - c.window) : 0;
        if (c.chunked) first = (pos0 + i) / c.window * c.window;
        std::vector<double> w(pos0 + i + 1, -INFINITY);
        for (int64_t j = first; j <= pos0 + i; ++j) {
          const int64_t off = b.tables[s][j / c.page_size] * stride + (g * c.page_size + j % c.page_size) * hd;
          double d = 0;
          for (int64_t e = 0; e < hd; ++e) d += double(b.q[row * b.ld + h * hd + e]) * b.k[off + e];
          w[j] = d / std::sqrt(double(hd));
          if (c.softcap > 0) w[j] = c.softcap * std::tanh(w[j] / c.softcap);
        }
        const double mx = *std::max_element(w.begin(), w.end());
        double den = 0;
        for (double& x : w) den += (x = std::exp(x - mx));
        for (int64_t j = first; j <= pos0 + i; ++j) {
          const int64_t off = (b.tables[s][j / c.page_size] * c.n_kv * c.page_size + g * c.page_size +
                               j % c.page_size) * v_row;
          for (int64_t e = 0; e < vd; ++e) out[row * b.ld + h * vd + e] += w[j] / den * vbase[off + e];
        }
      }
  }
  return out;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> cs = {
      {4, 4, 16, 4, {{0, 1}}},                          // GQA 1, a single token
      {4, 2, 33, 5, {{0, 7}, {9, 1}, {3, 11}}},         // GQA 2, odd head dim and page size
      {8, 2, 64, 16, {{37, 1}, {0, 40}, {100, 3}}},     // GQA 4, decode + prefill + extend
      {6, 3, 20, 7, {{14, 14}, {6, 1}}},                // pos0 and n_q straddling page edges
      {32, 4, 64, 16, {{0, 5}, {250, 1}}},              // TinyLlama heads
      // Sliding window: shorter than a page, straddling pages, longer than some sequences.
      {4, 2, 16, 4, {{0, 9}, {13, 2}, {30, 1}}, 3},
      {4, 2, 16, 5, {{0, 23}, {40, 1}, {7, 6}}, 11},
      // Wider values than keys, separate V cache.
      {4, 2, 24, 4, {{5, 3}, {0, 10}}, 0, 40},
      // MLA latent: one KV head, key = [c_kv | k_pe] (72), value = c_kv (64, the key row's prefix).
      {8, 1, 72, 4, {{0, 6}, {17, 1}, {9, 4}}, 0, 64, true},
      {16, 1, 72, 16, {{60, 1}, {0, 33}}, 0, 64, true},
      // Soft-capped scores (a cap near the scores' size, so tanh bends them): with a window, and over
      // more keys than one chunk (the split rows merge capped partials).
      {4, 2, 16, 4, {{0, 9}, {13, 2}, {30, 1}}, 3, 0, false, 0.5f},
      {8, 2, 64, 16, {{700, 1}, {0, 40}, {100, 3}}, 0, 0, false, 1.5f},
      // Chunked (Llama 4): chunks shorter than a page and across pages, a prefill crossing chunk ends; and
      // chunks of 640 where a row sees more keys than one key chunk (split and merged) and one just past an end.
      {4, 2, 16, 4, {{0, 9}, {13, 2}, {30, 1}}, 3, 0, false, 0, true},
      {4, 2, 16, 5, {{0, 23}, {40, 1}, {7, 6}}, 11, 0, false, 0, true},
      {8, 2, 64, 16, {{1270, 1}, {1281, 1}, {600, 50}}, 640, 0, false, 0, true},
  };
  return cs;
}

// Each test runs a group of ISA levels (test::IsaGroup): the vector ones, or AMX's tiles, which
// skip where the CPU has none.
class PagedAttention : public ::testing::TestWithParam<test::IsaGroup> {
 protected:
  void SetUp() override {
    isas_ = test::isas_in(GetParam());
    DPSERVE_SKIP_IF_NO_ISAS(isas_);
  }
  std::vector<KernelIsa> isas_;
};

TEST_P(PagedAttention, EveryIsaMatchesFloat64Definition) {
  for (size_t ci = 0; ci < cases().size(); ++ci) {
    const Case& c = cases()[ci];
    const Built b = build(c, uint32_t(100 + ci));
    const std::vector<double> want = naive(c, b);
    const std::vector<KernelIsa>& isas = isas_;
    // The portable reference runs with the vector group.
    const int runs = int(isas.size()) + (GetParam() == test::IsaGroup::Vector ? 1 : 0);
    for (int use_ref = 0; use_ref < runs; ++use_ref) {
      std::vector<float> out(b.rows * b.ld, NAN);
      const bool is_ref = use_ref == int(isas.size());
      if (is_ref)
        ref::paged_attention(b.q.data(), b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.kv, b.p, out.data(), b.ld);
      else
        paged_attention_isa(isas[use_ref], b.q.data(), b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.kv, b.p,
                            out.data(), b.ld);
      // Outputs are convex combinations of V in [-1, 1]; fp32 scores and a ~2 ulp exp give ~1e-6.
      for (int64_t r = 0; r < b.rows; ++r)
        for (int64_t e = 0; e < c.n_heads * (c.v_dim ? c.v_dim : c.head_dim); ++e)
          ASSERT_NEAR(out[r * b.ld + e], want[r * b.ld + e], 1e-5)
              << (is_ref ? "ref" : kernel_isa_name(isas[use_ref])) << " case " << ci << " row " << r << " elem " << e;
    }
  }
}

// A sequence's output must not depend on which other sequences share the batch.
TEST_P(PagedAttention, SequenceAloneEqualsSequenceInBatch) {
  const Case& c = cases()[2];
  const Built b = build(c, 7);
  for (KernelIsa isa : isas_) {
    std::vector<float> all(b.rows * b.ld, 0.0f);
    paged_attention_isa(isa, b.q.data(), b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.kv, b.p, all.data(), b.ld);
    for (size_t s = 0; s < b.seqs.size(); ++s) {
      std::vector<float> one(b.rows * b.ld, 0.0f);
      paged_attention_isa(isa, b.q.data(), b.ld, &b.seqs[s], 1, b.kv, b.p, one.data(), b.ld);
      const int64_t r0 = b.seqs[s].q_row, n = b.seqs[s].n_q;
      EXPECT_EQ(0, std::memcmp(one.data() + r0 * b.ld, all.data() + r0 * b.ld, n * b.ld * 4))
          << kernel_isa_name(isa) << " sequence " << s;
    }
  }
}

// The query heads of one KV head are computed together (sharing each page's key and value
// loads, in groups of 4 and a remainder of 1-3): every head's output must be bit for bit what
// it gets when it is the only head, i.e. grouping changes no summation order.
TEST_P(PagedAttention, HeadsOfAGroupEqualEachHeadAlone) {
  const std::vector<Case> group_cases = {
      {7, 1, 64, 16, {{0, 21}, {35, 1}, {5, 9}}},           // 4 + 3 heads, pages cut short
      {6, 1, 33, 5, {{0, 17}, {12, 2}}},                    // 4 + 2, odd head dim and page size
      {9, 1, 16, 4, {{3, 6}}, 5},                           // 4 + 4 + 1, sliding window
      {16, 1, 72, 16, {{60, 1}, {0, 33}}, 0, 64, true},     // MLA latent, 16 heads
      {5, 1, 24, 4, {{5, 3}, {0, 10}}, 0, 40},              // 4 + 1, values wider than keys
  };
  for (size_t ci = 0; ci < group_cases.size(); ++ci) {
    const Case& c = group_cases[ci];
    const Built b = build(c, uint32_t(300 + ci));
    const int64_t vd = c.v_dim ? c.v_dim : c.head_dim;
    for (KernelIsa isa : isas_) {
      std::vector<float> all(b.rows * b.ld, 0.0f);
      paged_attention_isa(isa, b.q.data(), b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.kv, b.p, all.data(), b.ld);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        AttnParams one = b.p;
        one.n_heads = 1;
        std::vector<float> alone(b.rows * b.ld, 0.0f);
        paged_attention_isa(isa, b.q.data() + h * c.head_dim, b.ld, b.seqs.data(), int64_t(b.seqs.size()), b.kv, one,
                            alone.data() + h * vd, b.ld);
        for (int64_t r = 0; r < b.rows; ++r)
          ASSERT_EQ(0, std::memcmp(&alone[r * b.ld + h * vd], &all[r * b.ld + h * vd], size_t(vd) * sizeof(float)))
              << kernel_isa_name(isa) << " case " << ci << " head " << h << " row " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(IsaGroups, PagedAttention,
                         ::testing::Values(test::IsaGroup::Vector, test::IsaGroup::Amx),
                         [](const auto& i) { return test::isa_group_name(i.param); });

TEST(PagedAttentionParams, BadParametersAreRejected) {
  const Built b = build(cases()[1], 3);
  AttnParams p = b.p;
  std::vector<float> out(b.rows * b.ld);
  p.n_heads = 5;  // not a multiple of 2 KV heads
  EXPECT_THROW(paged_attention(b.q.data(), b.ld, b.seqs.data(), 1, b.kv, p, out.data(), b.ld), Error);
  p = b.p;
  p.head_dim = 32;  // does not match the cache
  EXPECT_THROW(paged_attention(b.q.data(), b.ld, b.seqs.data(), 1, b.kv, p, out.data(), b.ld), Error);
  KVLayerView kv = b.kv;
  kv.k_row = b.kv.head_dim - 1;  // rows narrower than the key
  EXPECT_THROW(paged_attention(b.q.data(), b.ld, b.seqs.data(), 1, kv, b.p, out.data(), b.ld), Error);
  p = b.p;
  p.window = -1;
  EXPECT_THROW(paged_attention(b.q.data(), b.ld, b.seqs.data(), 1, b.kv, p, out.data(), b.ld), Error);
}

}  // namespace
}  // namespace dpserve
