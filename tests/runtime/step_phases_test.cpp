// The phase clock on a real model (llama2.c stories260K): which steps it records, that every phase
// of every layer is marked once a step, and that the weight bytes it assigns to the phases add up
// to the model's own count of its weights, in the proportions the config's shapes give.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/dtype.h"
#include "core/shared_dir.h"
#include "kv/kv_pool.h"
#include "model/model.h"
#include "model/step_phases.h"

namespace dpserve {
namespace {

std::unique_ptr<Model> stories() {
  LoadOptions o;
  o.threads = 2;
  o.verbose = false;
  return Model::load(shared_dir() + "/models/stories260K/stories260K.bin", o);
}

// Runs n tokens of one sequence through the model as one step.
void step(Model& m, KVPool& kv, PageTable& pt, const std::vector<int32_t>& toks) {
  ASSERT_TRUE(pt.reserve(kv, pt.len + int64_t(toks.size())));
  ForwardBatch b;
  b.add(toks.data(), int64_t(toks.size()), pt.len, pt.pages.data(), false);
  std::vector<float> logits(size_t(m.config().vocab));
  m.forward(b, kv, logits.data());
  pt.len += int64_t(toks.size());
}

TEST(StepPhases, RecordsOnlyStepsUpToItsSizeAndEveryLayersPhasesOnce) {
  auto m = stories();
  const ModelConfig& c = m->config();
  KVPool kv(m->kv_config(64, 16));
  PageTable pt;
  StepPhaseClock clock(1);
  m->set_phase_clock(&clock);
  step(*m, kv, pt, {1, 403, 407, 365});  // a 4-token prefill: not recorded
  EXPECT_EQ(clock.steps(), 0);
  EXPECT_EQ(clock.total_seconds(), 0.0);
  for (int32_t t : {429, 259, 270}) step(*m, kv, pt, {t});
  EXPECT_EQ(clock.steps(), 3);
  for (StepPhase p : {StepPhase::kQkv, StepPhase::kAttention, StepPhase::kOProj, StepPhase::kGateUp, StepPhase::kDown})
    EXPECT_EQ(clock.marks(p), 3 * c.n_layers) << step_phase_name(p);
  EXPECT_EQ(clock.marks(StepPhase::kExperts), 0);
  EXPECT_EQ(clock.marks(StepPhase::kLmHead), 3);
  for (int i = 0; i < StepPhaseClock::kPhases; ++i) EXPECT_GE(clock.seconds(StepPhase(i)), 0.0);
  EXPECT_GT(clock.seconds(StepPhase::kGateUp), 0.0);

  // Detached, and after a reset: nothing more is recorded.
  clock.reset();
  m->set_phase_clock(nullptr);
  step(*m, kv, pt, {300});
  EXPECT_EQ(clock.steps(), 0);
  EXPECT_EQ(clock.marks(StepPhase::kQkv), 0);
}

TEST(StepPhases, WeightBytesAddUpToTheModelsWeights) {
  auto m = stories();
  const ModelConfig& c = m->config();
  const int64_t qkv = m->phase_weight_bytes(StepPhase::kQkv), o = m->phase_weight_bytes(StepPhase::kOProj);
  const int64_t gu = m->phase_weight_bytes(StepPhase::kGateUp), down = m->phase_weight_bytes(StepPhase::kDown);
  const int64_t head = m->phase_weight_bytes(StepPhase::kLmHead);
  ASSERT_GT(o, 0);
  ASSERT_GT(down, 0);
  // Same dtype for every matrix of this checkpoint: the byte ratios are the shapes' element ratios.
  EXPECT_EQ(qkv * c.n_heads, o * (c.n_heads + 2 * c.n_kv_heads));
  EXPECT_EQ(gu, 2 * down);
  EXPECT_EQ(o * c.ffn, down * c.n_heads * c.head_dim);
  EXPECT_EQ(m->phase_weight_bytes(StepPhase::kAttention), 0);
  EXPECT_EQ(m->phase_weight_bytes(StepPhase::kExperts), 0);
  // The model's own total (from its tensor list): the products' matrices, the embedding table
  // (also the LM head when tied), and the fp32 norm vectors (two a layer and the final one).
  const int64_t norms = (2 * c.n_layers + 1) * c.hidden * int64_t(sizeof(float));
  const int64_t own_head = c.tie_embeddings ? 0 : head;
  EXPECT_EQ(qkv + o + gu + down + own_head + m->embedding_bytes() + norms, m->weight_bytes());
  if (c.tie_embeddings) {
    EXPECT_EQ(head, m->embedding_bytes());
  }
}

}  // namespace
}  // namespace dpserve
