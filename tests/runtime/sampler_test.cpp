// Sampling: each filter against probabilities computed by hand from the definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/sampler.h"

using namespace dpserve;

namespace {

const std::vector<double> kP = {0.5, 0.3, 0.15, 0.05};

std::vector<double> frequencies(SamplingParams sp, int draws, uint64_t seed = 7) {
  sp.seed = seed;
  Sampler s(sp, 0);
  std::vector<double> f(kP.size(), 0.0);
  for (int i = 0; i < draws; ++i) {
    std::vector<float> l;
    for (double p : kP) l.push_back(float(std::log(p)));
    f[size_t(s.sample(l.data(), int64_t(l.size())))] += 1.0 / draws;
  }
  return f;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "token " << i;
}

}  // namespace

TEST(Sampler, TemperatureOneFollowsTheSoftmax) {
  expect_close(frequencies(SamplingParams{}, 20000), kP, 0.015);
}

TEST(Sampler, TemperatureSharpensAsPowerOfProbabilities) {
  SamplingParams sp;
  sp.temperature = 0.5f;  // p^(1/T) = p^2, renormalised
  double z = 0;
  for (double p : kP) z += p * p;
  std::vector<double> want;
  for (double p : kP) want.push_back(p * p / z);
  expect_close(frequencies(sp, 20000), want, 0.015);
}

TEST(Sampler, TopKTopPMinPKeepTheRightSupport) {
  SamplingParams k;
  k.top_k = 2;
  expect_close(frequencies(k, 20000), {0.5 / 0.8, 0.3 / 0.8, 0, 0}, 0.015);
  SamplingParams p;
  p.top_p = 0.7f;  // 0.5 < 0.7 <= 0.8: the two most likely tokens
  expect_close(frequencies(p, 20000), {0.5 / 0.8, 0.3 / 0.8, 0, 0}, 0.015);
  SamplingParams m;
  m.min_p = 0.25f;  // keep p >= 0.125: three tokens
  expect_close(frequencies(m, 20000), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 0.015);
}

TEST(Sampler, GreedyAndSeedsAreDeterministic) {
  SamplingParams g;
  g.temperature = 0;
  Sampler s(g, 1);
  std::vector<float> l = {0.1f, 3.0f, 3.0f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 4), 1);  // ties go to the lower id
  SamplingParams r;
  r.seed = 42;
  Sampler a(r, 0), b(r, 99);
  std::vector<int> sa, sb;
  for (int i = 0; i < 50; ++i) {
    std::vector<float> la = {0.f, 0.f, 0.f, 0.f}, lb = la;
    sa.push_back(a.sample(la.data(), 4));
    sb.push_back(b.sample(lb.data(), 4));
  }
  EXPECT_EQ(sa, sb);  // same seed, same stream, whatever the fallback
  EXPECT_NE(frequencies(SamplingParams{}, 200, 1), frequencies(SamplingParams{}, 200, 2));
}

TEST(Sampler, PenaltiesFollowTheirDefinitions) {
  SamplingParams rp;
  rp.temperature = 0;
  rp.repetition_penalty = 1.2f;
  Sampler s(rp, 0);
  int32_t prompt[] = {0};
  s.add_prompt(prompt, 1);
  std::vector<float> l = {2.0f, 1.9f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 3), 1);  // 2.0 / 1.2 = 1.67 < 1.9
  EXPECT_NEAR(l[0], 2.0f / 1.2f, 1e-6);

  SamplingParams fp;
  fp.temperature = 0;
  fp.frequency_penalty = 0.5f;
  Sampler f(fp, 0);
  std::vector<float> a = {1.0f, 0.8f};
  EXPECT_EQ(f.sample(a.data(), 2), 0);  // token 0 generated once
  std::vector<float> b = {1.0f, 0.8f};
  EXPECT_EQ(f.sample(b.data(), 2), 1);  // 1.0 - 0.5 < 0.8
  EXPECT_FLOAT_EQ(b[0], 0.5f);

  SamplingParams pp;
  pp.temperature = 0;
  pp.presence_penalty = 0.1f;
  Sampler p(pp, 0);
  std::vector<float> c = {1.0f, 0.95f};
  EXPECT_EQ(p.sample(c.data(), 2), 0);
  std::vector<float> d = {1.0f, 0.95f};
  EXPECT_EQ(p.sample(d.data(), 2), 1);  // 1.0 - 0.1 < 0.95
}

// The frequency penalty is count * penalty (OpenAI's definition): a second occurrence costs twice.
TEST(Sampler, FrequencyPenaltyGrowsWithTheCount) {
  SamplingParams fp;
  fp.temperature = 0;
  fp.frequency_penalty = 0.5f;
  Sampler f(fp, 0);
  std::vector<float> a = {1.0f, 0.8f};
  ASSERT_EQ(f.sample(a.data(), 2), 0);  // count(0) = 1
  std::vector<float> b = {2.0f, 1.4f};
  ASSERT_EQ(f.sample(b.data(), 2), 0);  // 2.0 - 0.5 * 1 = 1.5 > 1.4: count(0) = 2
  std::vector<float> c = {2.0f, 1.4f};
  EXPECT_EQ(f.sample(c.data(), 2), 1);  // 2.0 - 0.5 * 2 = 1.0 < 1.4
  EXPECT_FLOAT_EQ(c[0], 1.0f);
}

// transformers' RepetitionPenaltyLogitsProcessor: score < 0 ? score * penalty : score / penalty, so a
// seen token's negative logit moves further down, never up.
TEST(Sampler, RepetitionPenaltyPushesNegativeLogitsDown) {
  SamplingParams rp;
  rp.temperature = 0;
  rp.repetition_penalty = 1.2f;
  Sampler s(rp, 0);
  int32_t prompt[] = {0};
  s.add_prompt(prompt, 1);
  std::vector<float> l = {-1.0f, -1.1f};
  EXPECT_EQ(s.sample(l.data(), 2), 1);  // -1.0 * 1.2 = -1.2 < -1.1
  EXPECT_FLOAT_EQ(l[0], -1.2f);
}

// Temperature applies with the truncating filters too: top_k = 2 at T = 0.5 keeps the two most likely
// tokens with weights p^2, 0.25 / 0.34 and 0.09 / 0.34.
TEST(Sampler, TemperatureAppliesUnderTopK) {
  SamplingParams sp;
  sp.top_k = 2;
  sp.temperature = 0.5f;
  expect_close(frequencies(sp, 20000), {0.25 / 0.34, 0.09 / 0.34, 0, 0}, 0.015);
}

// The filters intersect (SGLang masks each on the same sorted distribution): min_p = 0.25 keeps three
// tokens (p >= 0.125) and top_p = 0.99 keeps all four (0.95 < 0.99), so three remain.
TEST(Sampler, TopPDoesNotWidenWhatMinPCut) {
  SamplingParams sp;
  sp.min_p = 0.25f;
  sp.top_p = 0.99f;
  expect_close(frequencies(sp, 20000), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 0.015);
}
