// model_identity: what the --nnodes join and the --kv-cache-dir file compare to decide "the same
// model". Each config field changed below changes what the forward pass computes (docs/models.md),
// and a tensor rewritten in the middle of a weight file is what a fine-tune or a merged adapter of
// the same shape is; each must change the identity, and an identical copy must not.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/model_identity.h"

namespace dpserve {
namespace {

namespace fs = std::filesystem;

int64_t value_of(const std::vector<std::pair<std::string, int64_t>>& id, const std::string& what) {
  for (const auto& [k, v] : id)
    if (k == what) return v;
  ADD_FAILURE() << "no " << what;
  return 0;
}

ModelConfig base_config() {
  ModelConfig c;
  c.arch_name = "Qwen3MoeForCausalLM";
  c.hidden = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn = 128, c.vocab = 100;
  c.n_experts = 8, c.n_experts_per_tok = 2, c.moe_ffn = 32;
  return c;
}

TEST(ModelIdentity, EveryConfigFieldTheForwardPassReadsChangesTheDigest) {
  const std::string dir = fs::temp_directory_path() / ("dpserve_identity_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto digest = [&](const ModelConfig& c) { return value_of(model_identity(dir, c), "model config digest"); };
  const int64_t base = digest(base_config());
  EXPECT_EQ(digest(base_config()), base);
  const std::vector<std::pair<const char*, std::function<void(ModelConfig&)>>> changes = {
      {"rope_scaling linear x4", [](ModelConfig& c) { c.rope_scaling.type = RopeScaling::Type::Linear, c.rope_scaling.factor = 4; }},
      {"rope_scaling factor", [](ModelConfig& c) { c.rope_scaling.factor = 2; }},
      {"yarn beta_fast", [](ModelConfig& c) { c.rope_scaling.beta_fast = 16; }},
      {"rope freq_factors", [](ModelConfig& c) { c.rope_scaling.freq_factors = {1.f, 2.f}; }},
      {"norm_topk_prob", [](ModelConfig& c) { c.routing.normalize = !c.routing.normalize; }},
      {"routed_scaling_factor", [](ModelConfig& c) { c.routing.scaling = 2.5; }},
      {"scoring_func sigmoid", [](ModelConfig& c) { c.routing.scoring = MoeRouting::Scoring::Sigmoid; }},
      {"topk_method", [](ModelConfig& c) { c.routing.topk = MoeRouting::TopK::NoauxTc; }},
      {"topk_group", [](ModelConfig& c) { c.routing.topk_group = 2; }},
      {"MLA kv_lora_rank", [](ModelConfig& c) { c.mla.kv_lora_rank = 32; }},
      {"MLA qk_rope_head_dim", [](ModelConfig& c) { c.mla.qk_rope_head_dim = 8; }},
      {"vision window_size", [](ModelConfig& c) { c.vision.window_size = 56; }},
      {"vision fullatt_blocks", [](ModelConfig& c) { c.vision.fullatt_blocks = {3}; }},
      {"num_nextn_predict_layers", [](ModelConfig& c) { c.nextn_layers = 1; }},
      {"rms_norm_eps", [](ModelConfig& c) { c.rms_eps = 1e-6; }},
      {"partial rotary", [](ModelConfig& c) { c.rotary_dim = 4; }},
      {"longrope long factors", [](ModelConfig& c) { c.rope_scaling.long_factors = {1.f, 3.f}; }},
      {"longrope short factors", [](ModelConfig& c) { c.rope_scaling.short_factors = {1.f, 3.f}; }},
      {"SmolLM3 NoPE layer", [](ModelConfig& c) { c.layer_nope = {0, 1}; }},
      {"SmolLM3 NoPE layer moved", [](ModelConfig& c) { c.layer_nope = {1, 0}; }},
      {"Granite residual_multiplier", [](ModelConfig& c) { c.residual_scale = 0.22; }},
      {"Granite logits_scaling", [](ModelConfig& c) { c.logit_divisor = 8; }},
      {"OLMo 2 whole-projection q/k norm", [](ModelConfig& c) { c.qk_norm_whole = true; }},
      {"OLMo 2 post-norms only", [](ModelConfig& c) { c.post_norms_only = true; }},
  };
  for (const auto& [what, change] : changes) {
    ModelConfig c = base_config();
    change(c);
    EXPECT_NE(digest(c), base) << what;
  }
  fs::remove_all(dir);
}

TEST(ModelIdentity, ATensorRewrittenInTheMiddleOfAWeightFileChangesTheDigest) {
  const std::string root = fs::temp_directory_path() / ("dpserve_identity_w_" + std::to_string(::getpid()));
  std::vector<char> bytes(size_t(8) << 20);
  std::mt19937 rng(7);
  for (char& b : bytes) b = char(rng());
  auto weights_digest = [&](const std::vector<char>& content, const std::string& name) {
    const std::string dir = root + "/" + name;
    fs::create_directories(dir);
    std::ofstream(dir + "/model.safetensors", std::ios::binary).write(content.data(), std::streamsize(content.size()));
    return value_of(model_identity(dir, base_config()), "model weights digest");
  };
  const int64_t base = weights_digest(bytes, "a");
  EXPECT_EQ(weights_digest(bytes, "b"), base);  // the same bytes in another folder
  // One 1 MiB tensor in the middle scaled (every element changes): far from the file's ends.
  std::vector<char> tuned = bytes;
  for (size_t i = size_t(3) << 20; i < size_t(4) << 20; ++i) tuned[i] = char(tuned[i] * 3 + 1);
  EXPECT_NE(weights_digest(tuned, "c"), base);
  // The last byte (a file's tail is read whole).
  std::vector<char> tail = bytes;
  tail.back() ^= 1;
  EXPECT_NE(weights_digest(tail, "d"), base);
  fs::remove_all(root);
}

}  // namespace
}  // namespace dpserve
