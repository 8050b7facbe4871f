// The n-gram drafter, the per-request draft policy and the flag checks of speculative decoding
// (engine/speculative.h), against cases worked out by hand; the verification rule against the
// exact distribution of a small target, with a chi-square bound that a wrong rule fails.
#include "engine/speculative.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "engine/sampler.h"

#include "core/check.h"

namespace dpserve {
namespace {

using Ids = std::vector<int32_t>;

TEST(NgramDraft, LongestRecurringSuffixWinsAndItsLatestOccurrence) {
  // Suffix "4 5" occurs at 1 and at 6; the latest (6) is followed by 9 9 4 5; no longer suffix
  // ("9 4 5", "9 9 4 5") recurs, so the 2-token one decides.
  const Ids t{1, 4, 5, 7, 8, 2, 4, 5, 9, 9, 4, 5};
  EXPECT_EQ(ngram_draft(t, 4, 1, 4), (Ids{9, 9, 4, 5}));
  EXPECT_EQ(ngram_draft(t, 2, 1, 4), (Ids{9, 9}));
  // A longer matching suffix beats a more recent shorter one: "1 2 3" recurs at 0, "3" alone at 5.
  const Ids u{1, 2, 3, 8, 9, 3, 7, 1, 2, 3};
  EXPECT_EQ(ngram_draft(u, 3, 1, 3), (Ids{8, 9, 3}));
  EXPECT_EQ(ngram_draft(u, 3, 1, 1), (Ids{7, 1, 2}));  // window 1: the latest "3" before the end
}

TEST(NgramDraft, DraftContinuesPeriodicallyPastTheEnd) {
  // "5" recurs at 3; after it only one 5 is known: a period of 1, drafted 4 times.
  EXPECT_EQ(ngram_draft({1, 2, 3, 5, 5}, 4, 1, 4), (Ids{5, 5, 5, 5}));
  // "1 2" recurs at 2, followed by "1 2" (the suffix itself): a period of 2 continued to 7 tokens.
  EXPECT_EQ(ngram_draft({1, 2, 1, 2, 1, 2}, 7, 1, 2), (Ids{1, 2, 1, 2, 1, 2, 1}));
  // The suffix "9 7 8" recurs at 1; 3 tokens follow it (9 7 8, up to the end), then the period goes on.
  EXPECT_EQ(ngram_draft({4, 9, 7, 8, 9, 7, 8}, 5, 1, 3), (Ids{9, 7, 8, 9, 7}));
}

TEST(NgramDraft, NothingWhenNoSuffixRecursOrWindowsExcludeIt) {
  EXPECT_TRUE(ngram_draft({1, 2, 3, 4}, 4, 1, 4).empty());
  EXPECT_TRUE(ngram_draft({7}, 4, 1, 4).empty());
  EXPECT_TRUE(ngram_draft({}, 4, 1, 4).empty());
  EXPECT_TRUE(ngram_draft({1, 2, 9, 2}, 4, 2, 4).empty());  // only a 1-token suffix recurs
  EXPECT_TRUE(ngram_draft({1, 2, 1, 2}, 0, 1, 4).empty());
}

// Image or embedding rows of a prompt carry negative placeholder ids: no draft may hold one (the
// step feeds drafts as token ids; a placeholder there stopped the whole server). The draft ends
// before the first.
TEST(NgramDraft, StopsBeforeAPromptRowWithoutATokenId) {
  // "A" (32) then an image's rows, later the model writes "A": the match is at 0, followed by the
  // image start (151652) and three placeholder rows.
  const Ids t{32, 151652, -1, -2, -3, 151653, 7, 32};
  EXPECT_EQ(ngram_draft(t, 4, 1, 4), (Ids{151652}));
  EXPECT_TRUE(ngram_draft({5, -1, -2, 5}, 3, 1, 3).empty());
  // Placeholders in the matched suffix itself are fine: only what follows it is drafted.
  EXPECT_EQ(ngram_draft({-1, -2, 9, 4, -1, -2}, 2, 1, 2), (Ids{9, 4}));
}

// Predicted outputs (OpenAI's 'prediction'): the prediction's next tokens while the output follows
// it, then its tokens after the output's longest recent suffix, at its first occurrence there (no
// expectation given).
TEST(PredictionDraft, FollowsThePredictionAndPicksItUpAfterAnEdit) {
  const Ids p{10, 11, 12, 13, 14, 15, 16};
  auto draft = [&](const Ids& out, int64_t k, int64_t min_w = 1, int64_t max_w = 4) {
    return prediction_draft(p, out.data(), int64_t(out.size()), k, min_w, max_w);
  };
  EXPECT_EQ(draft({}, 3), (Ids{10, 11, 12}));             // nothing written yet: its start
  EXPECT_EQ(draft({10, 11}, 3), (Ids{12, 13, 14}));       // on track
  EXPECT_EQ(draft({10, 11, 12, 13, 14}, 4), (Ids{15, 16}));  // only what is left
  EXPECT_TRUE(draft(p, 4).empty());                        // used up
  // The model wrote 99 in place of 12, then 13 again: "13" is found at 3, 14 15 follow.
  EXPECT_EQ(draft({10, 11, 99, 13}, 2), (Ids{14, 15}));
  // The longest suffix decides: "11 12" at 1 beats a lone "12"; a suffix found nowhere gives nothing.
  const Ids q{12, 7, 11, 12, 8, 9};
  EXPECT_EQ(prediction_draft(q, Ids{5, 11, 12}.data(), 3, 2, 1, 4), (Ids{8, 9}));
  EXPECT_EQ(prediction_draft(q, Ids{5, 12}.data(), 2, 2, 1, 4), (Ids{7, 11}));  // first "12", at 0
  EXPECT_TRUE(draft({99, 98}, 3).empty());
  EXPECT_TRUE(draft({10, 99, 16}, 3).empty());  // "16" ends the prediction: nothing follows it
  EXPECT_TRUE(draft({99, 13}, 3, 2).empty());   // a 2-token window is asked for; only "13" matches
  EXPECT_TRUE(draft({10}, 0).empty());
}

// Text repeats: of the places the output's suffix occurs in the prediction, the drafts come from
// the one nearest where the output is expected to be (worked by hand: "1 2 3" ends at 3, 9 and 15).
TEST(PredictionDraft, RepeatedTextIsPickedUpNearWhereTheOutputShouldBe) {
  const Ids p{1, 2, 3, 4, 5, 6, 1, 2, 3, 7, 8, 9, 1, 2, 3, 10};
  const Ids out{1, 2, 3, 4, 5, 6, 99, 1, 2, 3};  // parted at 6 ("99"), then "1 2 3" as at 6..8
  auto draft = [&](int64_t expect, int64_t* at) {
    return prediction_draft(p, out.data(), int64_t(out.size()), 2, 1, 4, expect, at);
  };
  int64_t at = 0;
  EXPECT_EQ(draft(-1, &at), (Ids{4, 5}));  // no expectation: the first occurrence
  EXPECT_EQ(at, 3);
  EXPECT_EQ(draft(9, &at), (Ids{7, 8}));  // expected at 9: the one ending there
  EXPECT_EQ(at, 9);
  EXPECT_EQ(draft(14, &at), (Ids{10}));  // 15 is 1 away, 9 is 5
  EXPECT_EQ(at, 15);
  EXPECT_EQ(draft(12, &at), (Ids{7, 8}));  // 9 and 15 both 3 away: the first of equals
  EXPECT_EQ(draft(100, &at), (Ids{10}));   // past the end: the last
  // The longest suffix still decides first: "5 6 7" at 0 beats "6 7" ending right at the expectation.
  const Ids q{5, 6, 7, 0, 0, 0, 6, 7, 8};
  EXPECT_EQ(prediction_draft(q, Ids{9, 5, 6, 7}.data(), 4, 2, 1, 4, 8, &at), (Ids{0, 0}));
  EXPECT_EQ(at, 3);
  // On track the position is the output's length; nothing found leaves -1.
  EXPECT_EQ(prediction_draft(p, p.data(), 4, 1, 1, 4, 100, &at), (Ids{5}));
  EXPECT_EQ(at, 4);
  EXPECT_TRUE(prediction_draft(p, Ids{42}.data(), 1, 1, 1, 4, 3, &at).empty());
  EXPECT_EQ(at, -1);
}

TEST(DraftPolicy, GrowsOnFullAcceptanceShrinksOnMissPausesOnRepeatedMisses) {
  DraftPolicy p;
  EXPECT_EQ(p.allowed(5), 5);   // starts at the most allowed
  p.on_verified(5, 2, 5);       // 2 of 5 right: next time 3
  EXPECT_EQ(p.allowed(5), 3);
  p.on_verified(3, 3, 5);       // all right: one more
  EXPECT_EQ(p.allowed(5), 4);
  p.on_verified(4, 0, 5);       // a miss at the first draft: down to 1
  EXPECT_EQ(p.allowed(5), 1);
  p.on_verified(1, 0, 5);       // two misses at one token in a row: a pause of 4 steps
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p.allowed(5), 0) << i;
  EXPECT_EQ(p.allowed(5), 1);
  p.on_verified(1, 0, 5);
  p.on_verified(1, 0, 5);       // again: the pause doubles
  for (int i = 0; i < 8; ++i) EXPECT_EQ(p.allowed(5), 0) << i;
  EXPECT_EQ(p.allowed(5), 1);
  p.on_verified(1, 1, 5);       // a success resets the pause length and grows the cap
  EXPECT_EQ(p.allowed(5), 2);
  EXPECT_EQ(p.drafted_total, 5 + 3 + 4 + 1 + 1 + 1 + 1);
  EXPECT_EQ(p.accepted_total, 2 + 3 + 1);
  EXPECT_EQ(p.verify_steps, 7);
  p.on_verified(0, 0, 5);  // no drafts: nothing changes
  EXPECT_EQ(p.verify_steps, 7);
  EXPECT_EQ(p.allowed(3), 2);  // never above the step's max
}

// A two-token target over 5 tokens: p0 for the first token, p1(. | first) for the second.
constexpr int kV = 5;
const float kLogits0[kV] = {1.2f, 0.3f, -0.5f, 0.9f, 0.0f};
void logits1(int32_t first, float* out) {
  for (int j = 0; j < kV; ++j) out[j] = 0.4f * float((first * 3 + j * 2) % kV) - 0.1f * float(j);
}
std::vector<double> softmax(const float* l) {
  std::vector<double> p(kV);
  double z = 0;
  for (int j = 0; j < kV; ++j) z += p[j] = std::exp(double(l[j]));
  for (auto& x : p) x /= z;
  return p;
}

// The verification of one 2-token generation with drafts d0 d1, as the step loop runs it: row 0
// is the distribution after the prompt, row 1 the one after d0 (computed before knowing whether d0
// is taken); a token the chain did not reach is drawn by the next plain decode step.
using Rule = std::function<int64_t(const int32_t*, int64_t, const std::function<std::optional<int32_t>(int64_t)>&)>;
std::pair<int32_t, int32_t> generate_two(const Rule& rule, const int32_t* drafts, uint64_t seed) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = seed;
  Sampler sampler(sp, seed);
  float rows[2][kV];
  std::copy(kLogits0, kLogits0 + kV, rows[0]);
  logits1(drafts[0], rows[1]);
  std::vector<int32_t> toks;
  const int64_t taken = rule(drafts, 1, [&](int64_t r) -> std::optional<int32_t> {
    const int32_t t = sampler.sample(rows[r], kV);
    toks.push_back(t);
    return t;
  });
  toks.resize(size_t(taken));
  if (toks.size() < 2) {
    float l[kV];
    logits1(toks[0], l);
    toks.push_back(sampler.sample(l, kV));
  }
  return {toks[0], toks[1]};
}

// Pearson's chi-square of `n` generations against the exact joint distribution (25 cells).
double chi_square(const Rule& rule, const int32_t* drafts, int n) {
  std::vector<double> count(kV * kV, 0.0);
  for (int i = 0; i < n; ++i) {
    auto [a, b] = generate_two(rule, drafts, 1000003ull * uint64_t(i) + 17);
    count[size_t(a * kV + b)] += 1;
  }
  const auto p0 = softmax(kLogits0);
  double chi = 0;
  for (int a = 0; a < kV; ++a) {
    float l[kV];
    logits1(a, l);
    const auto p1 = softmax(l);
    for (int b = 0; b < kV; ++b) {
      const double e = n * p0[size_t(a)] * p1[size_t(b)];
      chi += (count[size_t(a * kV + b)] - e) * (count[size_t(a * kV + b)] - e) / e;
    }
  }
  return chi;
}

TEST(VerifyDrafts, KeepsTheTargetDistributionAndAWrongRuleIsCaught) {
  // 24 degrees of freedom: P(chi2 > 51.18) = 0.001. Drafts: a likely first token (0), an unlikely
  // one (2), each followed by a second draft.
  constexpr double kBound = 51.18;
  constexpr int kN = 20000;
  const Rule ours = [](const int32_t* d, int64_t n, const auto& draw) { return verify_drafts(d, n, draw); };
  // The wrong rule a verifier could plausibly have: every row sampled, none checked against the
  // draft fed after it (row 1 then speaks for a first token that was not drawn).
  const Rule never_checks = [](const int32_t*, int64_t n, const auto& draw) -> int64_t {
    for (int64_t r = 0; r <= n; ++r) draw(r);
    return n + 1;
  };
  const int32_t likely[2] = {0, 3}, unlikely[2] = {2, 1};
  for (const int32_t* d : {likely, unlikely}) {
    EXPECT_LT(chi_square(ours, d, kN), kBound) << "drafts " << d[0] << " " << d[1];
    EXPECT_GT(chi_square(never_checks, d, kN), kBound) << "drafts " << d[0] << " " << d[1];
  }
}

TEST(SpeculativeConfig, ValidateFillsAndChecksTheFlags) {
  SpeculativeConfig off;
  EXPECT_NO_THROW(validate(off));
  SpeculativeConfig c;
  c.algorithm = SpecAlgorithm::kNgram;
  validate(c);
  EXPECT_EQ(c.max_draft, kDefaultMaxDraft);
  SpeculativeConfig d = SpeculativeConfig{};
  d.algorithm = SpecAlgorithm::kNgram;
  d.num_draft_tokens = 7;  // SGLang's count includes the verified token
  validate(d);
  EXPECT_EQ(d.max_draft, 6);
  auto throws_naming = [](SpeculativeConfig x, const char* flag) {
    x.algorithm = SpecAlgorithm::kNgram;
    try {
      validate(x);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted an invalid " << flag;
  };
  SpeculativeConfig bad;
  bad.max_draft = 3, bad.num_draft_tokens = 6;
  throws_naming(bad, "--speculative-num-draft-tokens");
  bad = {}, bad.topk = 2;
  throws_naming(bad, "--speculative-eagle-topk");
  bad = {}, bad.max_draft = 65;
  throws_naming(bad, "--speculative-num-steps");
  bad = {}, bad.ngram_min_window = 3, bad.ngram_max_window = 2;
  throws_naming(bad, "--speculative-ngram-max-match-window-size");
  bad = {}, bad.max_step_rows = -1;
  throws_naming(bad, "--speculative-max-step-rows");
}

}  // namespace
}  // namespace dpserve
