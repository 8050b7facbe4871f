// The verify-cost estimate (engine/verify_cost.h) and the draft policy that reads it
// (engine/speculative.h): the expected distinct experts against a simulation of random routing, the
// MoE table against spec_verify_bench's measured ratios (docs/benchmarks.md), and the policy's
// behaviour over many simulated steps: what zero acceptance costs, what full acceptance drafts.
#include "engine/verify_cost.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "engine/speculative.h"

namespace dpserve {
namespace {

ModelConfig tinyllama() {  // TinyLlama-1.1B's widths
  ModelConfig c;
  c.arch = Arch::Llama;
  c.hidden = 2048, c.n_layers = 22, c.n_heads = 32, c.n_kv_heads = 4, c.head_dim = 64, c.ffn = 5632;
  c.vocab = 32000;
  return c;
}

ModelConfig qwen3_moe_bench() {  // tools/make_hf_model.py --preset qwen3-moe-bench
  ModelConfig c;
  c.arch = Arch::Qwen3Moe;
  c.hidden = 1024, c.n_layers = 16, c.n_heads = 16, c.n_kv_heads = 4, c.head_dim = 64, c.ffn = 3072;
  c.vocab = 32000, c.n_experts = 32, c.n_experts_per_tok = 4, c.moe_ffn = 768;
  return c;
}

TEST(VerifyCost, DistinctExpertsAgreeWithSimulatedRouting) {
  std::mt19937 rng(7);
  for (auto [experts, per_row, rows] : {std::tuple{32, 4, 2}, {32, 4, 9}, {64, 6, 5}, {8, 2, 3}, {4, 4, 6}}) {
    std::vector<int> ids(static_cast<size_t>(experts), 0);
    double sum = 0;
    constexpr int kTrials = 20000;
    for (int t = 0; t < kTrials; ++t) {
      std::vector<bool> seen(size_t(experts), false);
      for (int r = 0; r < rows; ++r) {
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), rng);
        for (int i = 0; i < per_row; ++i) seen[size_t(ids[size_t(i)])] = true;
      }
      sum += double(std::count(seen.begin(), seen.end(), true));
    }
    EXPECT_NEAR(expected_distinct_experts(experts, per_row, rows), sum / kTrials, 0.02 * per_row)
        << experts << " experts, " << per_row << " per row, " << rows << " rows";
  }
}

TEST(VerifyCost, DenseRowsCostOnlyTheirProducts) {
  const std::vector<int32_t> c = verify_cost_permille(tinyllama(), 9);
  ASSERT_EQ(c.size(), 9u);
  for (int n = 1; n <= 9; ++n) EXPECT_EQ(c[size_t(n - 1)], 1000 + kRowComputePermille * (n - 1)) << n;
  // Measured on this shape (docs/benchmarks.md, spec_verify_bench): 1.1-1.26 up to 8 rows.
  EXPECT_GE(c[7], 1100);
  EXPECT_LE(c[7], 1300);
}

TEST(VerifyCost, MoeRowsReadOtherExpertsAsMeasured) {
  const std::vector<int32_t> c = verify_cost_permille(qwen3_moe_bench(), 9);
  // spec_verify_bench on this shape measured 1.47 (2 rows), 2.71 (5 rows), 5.16 (9 rows) on a busy
  // host; the estimate assumes uniform routing, so it may sit on either side, within ~30 %.
  EXPECT_NEAR(c[1] / 1000.0, 1.47, 0.3);
  EXPECT_NEAR(c[4] / 1000.0, 2.71, 0.8);
  EXPECT_NEAR(c[8] / 1000.0, 5.16, 1.5);
  for (size_t n = 1; n < c.size(); ++n) EXPECT_GT(c[n], c[n - 1]);
  // An expert choice that covers every expert reads no more with more rows: dense-like.
  ModelConfig all = qwen3_moe_bench();
  all.n_experts_per_tok = all.n_experts;
  const std::vector<int32_t> d = verify_cost_permille(all, 4);
  for (int n = 1; n <= 4; ++n) EXPECT_EQ(d[size_t(n - 1)], 1000 + kRowComputePermille * (n - 1));
  // NEXTN's chain: each draft past the first adds a one-row pass of one layer. By hand: a layer reads
  // q/o 2 x 1024^2 + k/v 2 x 1024 x 256 + router 1024 x 32 + 4 experts x 3 x 1024 x 768 = 12091392
  // parameters; a step 16 such layers and the LM head 32000 x 1024: 226230272. 3 x 0.05345 = 0.160.
  const std::vector<int32_t> e = verify_cost_permille(qwen3_moe_bench(), 5, 1);
  EXPECT_EQ(e[0], c[0]);
  EXPECT_EQ(e[1], c[1]);
  EXPECT_NEAR(e[4] - c[4], 160, 1);
}

// Drives a DraftPolicy for `steps` steps; each drafted token is right with `right(step)`. Returns the
// steps' total cost in decode steps and the tokens they made.
struct PolicyRun {
  double cost = 0;
  int64_t tokens = 0;
  int64_t verifications = 0;
  std::vector<int64_t> drafts;
};
template <class Right>
PolicyRun simulate(DraftPolicy& p, const std::vector<int32_t>* cost, int64_t max_draft, int64_t steps, Right&& right) {
  PolicyRun run;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t k = p.allowed(max_draft, cost);
    run.drafts.push_back(k);
    int64_t accepted = 0;
    while (accepted < k && right(s)) ++accepted;
    p.on_verified(k, accepted, max_draft);
    run.cost += cost && k > 0 ? (*cost)[size_t(k)] / 1000.0 : 1.0;
    run.tokens += 1 + accepted;
    run.verifications += k > 0;
  }
  return run;
}

TEST(DraftPolicyCost, ZeroAcceptanceOnMoeCostsLittleAndTheMissOnlyPolicyCostsMore) {
  const std::vector<int32_t> moe = verify_cost_permille(qwen3_moe_bench(), 5);
  for (int64_t steps : {96, 300}) {
    DraftPolicy aware;
    const PolicyRun a = simulate(aware, &moe, 4, steps, [](int64_t) { return false; });
    // The floor: speculation at near-zero acceptance keeps >= 0.95x of plain decode.
    EXPECT_GE(double(a.tokens) / a.cost, 0.95) << steps << " steps, " << a.verifications << " verifications";
    // The same run priced alike under the miss-only policy (no table): it drafts 4 first and
    // probes every few steps, which on this shape falls below the floor for a short request.
    DraftPolicy blind;
    PolicyRun b;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t k = blind.allowed(4);
      blind.on_verified(k, 0, 4);
      b.cost += k > 0 ? moe[size_t(k)] / 1000.0 : 1.0;
      b.tokens += 1;
    }
    EXPECT_LT(a.cost, b.cost) << steps;
    if (steps == 96) {
      EXPECT_LT(double(b.tokens) / b.cost, 0.95);
    }
  }
}

TEST(DraftPolicyCost, FullAcceptanceDraftsTheMostTokensPerCost) {
  for (const ModelConfig& m : {tinyllama(), qwen3_moe_bench()}) {
    const std::vector<int32_t> cost = verify_cost_permille(m, 9);
    DraftPolicy p;
    const PolicyRun r = simulate(p, &cost, 8, 60, [](int64_t) { return true; });
    // With every draft right the estimate tends to 1; the best k is then argmax (k + 1) / cost(k + 1).
    int64_t best = 0;
    for (int64_t k = 1; k <= 8; ++k)
      if ((k + 1) * 1000.0 / cost[size_t(k)] > (best + 1) * 1000.0 / cost[size_t(best)]) best = k;
    EXPECT_EQ(r.drafts.back(), best) << m.n_experts;
    EXPECT_GT(double(r.tokens) / r.cost, 1.5) << m.n_experts;
  }
}

TEST(DraftPolicyCost, DraftingResumesWhenTheOutputBecomesPredictable) {
  const std::vector<int32_t> moe = verify_cost_permille(qwen3_moe_bench(), 5);
  DraftPolicy p;
  simulate(p, &moe, 4, 200, [](int64_t) { return false; });  // a long unpredictable stretch
  EXPECT_LT(p.accept_estimate(), DraftPolicy::kOne / 4);
  // Then every draft is right: a probe comes within the longest pause (64 steps), and from there
  // drafting pays and goes on every step.
  const PolicyRun r = simulate(p, &moe, 4, 120, [](int64_t) { return true; });
  const auto first = std::find_if(r.drafts.begin(), r.drafts.end(), [](int64_t k) { return k > 0; });
  ASSERT_NE(first, r.drafts.end());
  EXPECT_LE(first - r.drafts.begin(), 65);
  const int64_t tail = std::count_if(r.drafts.end() - 20, r.drafts.end(), [](int64_t k) { return k > 0; });
  EXPECT_EQ(tail, 20);
}

TEST(DraftPolicyCost, DenseModelsKeepDraftingAtModestAcceptance) {
  // One draft in three right: on a dense model a row costs 4 % of a step, so drafting pays.
  const std::vector<int32_t> dense = verify_cost_permille(tinyllama(), 5);
  DraftPolicy p;
  std::mt19937 rng(3);
  std::bernoulli_distribution third(1.0 / 3.0);
  const PolicyRun r = simulate(p, &dense, 4, 400, [&](int64_t) { return third(rng); });
  EXPECT_GT(r.verifications, 250);
  EXPECT_GT(double(r.tokens) / r.cost, 1.2);
}

}  // namespace
}  // namespace dpserve
