// The phase clock on a real model (llama2.c stories260K): which steps it records, that every phase
// of every layer is marked once a step, and that the weight bytes it assigns to the phases add up
// to the model's own count of its weights, in the proportions the config's shapes give.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
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

// A tiny random f32 folder written by tools/make_hf_model.py with `args`, loaded on one thread
// (null, with a test failure, if the script fails).
std::unique_ptr<Model> generated(const std::string& dir, const std::string& args) {
  std::filesystem::remove_all(dir);
  const std::string cmd = std::string(DPSERVE_PY) + " " + DPSERVE_TOOLS + "/make_hf_model.py --dtype f32 " + args +
                          " --no-tokenizer --quiet --out " + dir;
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << cmd;
    return nullptr;
  }
  LoadOptions o;
  o.threads = 1;
  o.verbose = false;
  return Model::load(dir, o);
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

// What a token's step reads (the benchmarks' decode limit): a dense model's every matrix, and of
// a MoE layer's routed experts the share its token picks, k of n. Expected values from the
// config's shapes, not from the model's sums.
TEST(StepPhases, TokenWeightBytesCountOnlyTheExpertsATokenPicks) {
  auto dense = stories();
  const ModelConfig& d = dense->config();
  const int64_t embed = d.tie_embeddings ? 0 : dense->embedding_bytes();
  EXPECT_EQ(dense->token_weight_bytes(), dense->weight_bytes() - embed);
  EXPECT_EQ(dense->token_weight_params(), dense->weight_params() - (d.tie_embeddings ? 0 : d.vocab * d.hidden));

  // A tiny Qwen3-MoE folder in f32 (its matrices stay plain rows: 4 bytes an element): 8 experts,
  // 2 a token; layer 0 sparse, layer 1 dense (the script's mlp_only_layers).
  const std::string dir = ::testing::TempDir() + "/token_weight_bytes_moe";
  auto m = generated(dir,
                     "--arch qwen3_moe --vocab-size 256 --hidden-size 64 --intermediate-size 128 "
                     "--num-hidden-layers 2 --num-attention-heads 4 --num-key-value-heads 2 --head-dim 16 "
                     "--num-experts 8 --num-experts-per-tok 2 --moe-intermediate-size 32");
  ASSERT_TRUE(m);
  const ModelConfig& c = m->config();
  ASSERT_EQ(c.n_experts, 8);
  ASSERT_EQ(c.n_experts_per_tok, 2);
  ASSERT_TRUE(c.layer_is_moe(0));
  ASSERT_FALSE(c.layer_is_moe(1));
  ASSERT_FALSE(c.tie_embeddings);
  const int64_t unpicked = (8 - 2) * 3 * 32 * 64;  // of layer 0's experts: 6 of 8, gate / up / down
  EXPECT_EQ(m->token_weight_params(), m->weight_params() - 256 * 64 - unpicked);
  EXPECT_EQ(m->token_weight_bytes(), m->weight_bytes() - 4 * 256 * 64 - 4 * unpicked);
  // The experts phase of a one-token step: the router (8 x 64) and 2 experts' three matrices.
  EXPECT_EQ(m->phase_weight_bytes(StepPhase::kExperts), 4 * (8 * 64 + 2 * 3 * 32 * 64));
  std::filesystem::remove_all(dir);
}

// An MLA layer's attention phase reads its projections and, per head, W_UK^T (a transposed copy of
// kv_b_proj's key rows) and W_UV (kv_b_proj's value rows): DeepSeek-V2's shapes, f32 plain rows.
TEST(StepPhases, MlaAttentionBytesAreTheAbsorbedFormsProjections) {
  const std::string dir = ::testing::TempDir() + "/phase_bytes_mla";
  auto m = generated(dir,
                     "--arch deepseek_v2 --vocab-size 256 --hidden-size 64 --num-hidden-layers 2 "
                     "--num-attention-heads 4 --q-lora-rank 48 --kv-lora-rank 64 --qk-nope-head-dim 32 "
                     "--v-head-dim 24 --qk-rope-head-dim 16");
  ASSERT_TRUE(m);
  const ModelConfig& c = m->config();
  ASSERT_EQ(c.n_heads, 4);
  ASSERT_EQ(c.mla.q_lora_rank, 48);
  ASSERT_EQ(c.mla.kv_lora_rank, 64);
  ASSERT_EQ(c.mla.v_head_dim, 24);
  const int64_t H = 4, hidden = 64, ql = 48, r = 64, nope = 32, rd = 16, vd = 24;
  const int64_t per_layer = ql * hidden + H * (nope + rd) * ql  // q_a_proj, q_b_proj
                            + (r + rd) * hidden                 // kv_a_proj_with_mqa
                            + hidden * H * vd                   // o_proj
                            + H * r * nope + H * vd * r;        // W_UK^T, W_UV
  EXPECT_EQ(m->phase_weight_bytes(StepPhase::kAttention), 2 * 4 * per_layer);
  EXPECT_EQ(m->phase_weight_bytes(StepPhase::kQkv), 0);
  EXPECT_EQ(m->phase_weight_bytes(StepPhase::kOProj), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dpserve
