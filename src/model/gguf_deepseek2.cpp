#include "model/gguf_deepseek2.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/check.h"
#include "model/gguf_config.h"
#include "model/gguf_set.h"

namespace dpserve {

namespace {

// llama.cpp's llama_expert_gating_func_type values.
constexpr int64_t kGatingSoftmax = 1, kGatingSigmoid = 2;

class Reader {
 public:
  Reader(const GgufMetadata& m, const std::string& p) : m_(m), p_(p) {}
  std::string key(const char* k) const { return p_ + k; }
  bool has(const char* k) const { return m_.has(key(k)); }

  // An integer in [lo, kGgufMaxWidth]; `def` when absent (absent without a default is an error).
  int64_t count(const char* k, int64_t lo, std::optional<int64_t> def = std::nullopt) const {
    const auto v = m_.get_int(key(k));
    if (!v) {
      if (!def)
        fail("GGUF {}: metadata key \"{}\" is missing (a {} model needs it)", m_.where(), key(k),
             p_.substr(0, p_.size() - 1));
      return *def;
    }
    if (*v < lo || *v > kGgufMaxWidth) fail("GGUF {}: metadata key \"{}\" is {}, out of range ({} to {})", m_.where(), key(k), *v, lo, kGgufMaxWidth);
    return *v;
  }
  std::optional<double> number(const char* k) const {
    const auto v = m_.get_float(key(k));
    if (v && !std::isfinite(*v)) fail("GGUF {}: metadata key \"{}\" is not a finite number", m_.where(), key(k));
    return v;
  }
  [[noreturn]] void bad(const char* k, const std::string& why) const {
    fail("GGUF {}: {}: {}", m_.where(), key(k), why);
  }
  const GgufMetadata& meta() const { return m_; }

 private:
  const GgufMetadata& m_;
  const std::string& p_;
};

void read_mla(const Reader& k, bool split, ModelConfig& c) {
  MlaConfig& a = c.mla;
  // Absent in DeepSeek-V2-Lite files (plain attn_q); llama.cpp reads it for any other layer count.
  a.q_lora_rank = k.count("attention.q_lora_rank", 0, 0);
  a.kv_lora_rank = k.count("attention.kv_lora_rank", 1);
  a.qk_rope_head_dim = k.count("rope.dimension_count", 2);
  if (a.qk_rope_head_dim % 2 != 0) k.bad("rope.dimension_count", "RoPE needs an even width");
  const int64_t kl = k.count("attention.key_length", 1), vl = k.count("attention.value_length", 1);
  int64_t kv_heads = c.n_heads;
  if (split) {
    // The converter describes the cache as one MQA head of [c_kv | k_pe] and keeps the per-head
    // widths in the _mla keys.
    const int64_t r = a.kv_lora_rank, rd = a.qk_rope_head_dim;
    if (kl != r + rd || vl != r)
      fail("GGUF {}: with {} the cache is the latent: key_length must be kv_lora_rank + rope.dimension_count "
           "= {} and value_length kv_lora_rank = {}, they are {} and {}",
           k.meta().where(), k.key("attention.key_length_mla"), r + rd, r, kl, vl);
    a.qk_nope_head_dim = k.count("attention.key_length_mla", 1) - rd;
    a.v_head_dim = k.count("attention.value_length_mla", 1);
    kv_heads = 1;
  } else {
    a.qk_nope_head_dim = kl - a.qk_rope_head_dim;
    a.v_head_dim = vl;
  }
  if (a.qk_nope_head_dim < 1)
    fail("GGUF {}: the key width ({}) leaves no room beside rope.dimension_count {}", k.meta().where(),
         a.qk_nope_head_dim + a.qk_rope_head_dim, a.qk_rope_head_dim);
  if (const auto h = k.meta().get_int(k.key("attention.head_count_kv")); h && *h != kv_heads)
    fail("GGUF {}: {} is {}, expected {} for this {} layout", k.meta().where(), k.key("attention.head_count_kv"), *h,
         kv_heads, split ? "latent (key_length_mla)" : "per-head (attn_kv_b)");
  c.head_dim = a.q_head_dim();
  c.n_kv_heads = c.n_heads;
}

// llama.cpp's build_moe_ffn for deepseek2: gating(logits) -> scores; the selection adds
// exp_probs_b when the file has it and, with expert_group_count > 1, keeps the
// expert_group_used_count groups of the highest sum of their two best (biased) scores; the
// chosen weights are the unbiased scores, divided by their sum if expert_weights_norm, then
// multiplied by expert_weights_scale. That is DeepSeek-V3's noaux_tc (a zero bias when absent).
// `default_gating`: the gating when expert_gating_func is absent.
void read_moe(const GgufSet& g, const Reader& k, ModelConfig& c, int64_t default_gating) {
  c.n_experts = k.count("expert_count", 0, 0);
  c.first_k_dense_replace = k.count("leading_dense_block_count", 0, 0);
  c.moe_layer_freq = 1;
  if (c.n_experts == 0) return;  // a dense model (Youtu-like); every layer takes feed_forward_length
  c.n_experts_per_tok = k.count("expert_used_count", 1);
  if (c.n_experts_per_tok > c.n_experts)
    fail("GGUF {}: {} {} exceeds {} {}", k.meta().where(), k.key("expert_used_count"), c.n_experts_per_tok,
         k.key("expert_count"), c.n_experts);
  c.moe_ffn = k.count("expert_feed_forward_length", 1);
  c.n_shared_experts = k.count("expert_shared_count", 0, 0);
  MoeRouting& r = c.routing;
  // deepseek2 files without the key are DeepSeek-V2 / V2.5 ones: softmax (llama.cpp's default too).
  const int64_t gating = k.meta().get_int(k.key("expert_gating_func")).value_or(default_gating);
  if (gating == kGatingSoftmax)
    r.scoring = MoeRouting::Scoring::Softmax;
  else if (gating == kGatingSigmoid)
    r.scoring = MoeRouting::Scoring::Sigmoid;
  else
    k.bad("expert_gating_func", fmt::format("{} is not supported (1 softmax, 2 sigmoid)", gating));
  r.normalize = k.meta().get_bool(k.key("expert_weights_norm")).value_or(false);
  r.scaling = k.number("expert_weights_scale").value_or(1.0);
  if (r.scaling == 0.0) r.scaling = 1.0;  // llama.cpp: 0 means "not set"
  if (r.scaling < 0) k.bad("expert_weights_scale", "must be positive");
  r.scale_normalized = true;
  const int64_t groups = std::max<int64_t>(k.count("expert_group_count", 0, 1), 1);
  bool bias = false;
  for (int64_t l = 0; l < c.n_layers; ++l)
    bias = bias || g.tensor("blk." + std::to_string(l) + ".exp_probs_b.bias") != nullptr;
  if (groups == 1 && !bias) {
    r.topk = MoeRouting::TopK::Greedy;
    return;
  }
  r.topk = MoeRouting::TopK::NoauxTc;
  r.n_group = groups;
  r.topk_group = groups > 1 ? k.count("expert_group_used_count", 1) : 1;
  if (c.n_experts % groups != 0)
    k.bad("expert_group_count", fmt::format("{} does not divide the {} experts", groups, c.n_experts));
  if (groups > 1 && (r.topk_group >= groups || c.n_experts / groups < 2))
    k.bad("expert_group_used_count", fmt::format("{} of {} groups of {} experts: llama.cpp needs fewer groups used "
                                                 "than there are and at least two experts per group",
                                                 r.topk_group, groups, c.n_experts / groups));
  if (c.n_experts_per_tok > r.topk_group * (c.n_experts / groups))
    k.bad("expert_used_count", fmt::format("{} exceeds the {} experts of the groups used", c.n_experts_per_tok,
                                           r.topk_group * (c.n_experts / groups)));
}

// YaRN as llama.cpp runs it for deepseek2: rope.scaling.yarn_log_multiplier holds
// 0.1 * mscale_all_dim, and llama.cpp takes the config's `mscale` equal to mscale_all_dim (true of
// the published models), so both come from that one key.
void read_yarn(const Reader& k, ModelConfig& c) {
  const auto type = k.meta().get_string(k.key("rope.scaling.type"));
  if (!type || *type != "yarn") return;
  RopeScaling& s = c.rope_scaling;
  const auto factor = k.number("rope.scaling.factor");
  if (!factor || *factor <= 0) k.bad("rope.scaling.factor", "yarn needs a positive factor");
  const auto log_mul = k.number("rope.scaling.yarn_log_multiplier");
  if (!log_mul)
    k.bad("rope.scaling.yarn_log_multiplier",
          "missing: dpserve does not guess the attention temperature (0.1 x mscale_all_dim) of a yarn model");
  for (const char* unit : {"rope.scaling.yarn_ext_factor", "rope.scaling.yarn_attn_factor", "rope.scaling.attn_factor"})
    if (const auto v = k.number(unit); v && *v != 1.0) k.bad(unit, fmt::format("{} is not supported (only 1)", *v));
  if (k.has("attention.temperature_scale")) k.bad("attention.temperature_scale", "is not supported");
  s.type = RopeScaling::Type::Yarn;
  s.factor = *factor;
  // llama.cpp falls back to the training context when the original one is not given.
  s.original_max_position_embeddings =
      double(k.count("rope.scaling.original_context_length", 1, std::min(c.max_pos, kGgufMaxWidth)));
  s.beta_fast = k.number("rope.scaling.yarn_beta_fast").value_or(32.0);
  s.beta_slow = k.number("rope.scaling.yarn_beta_slow").value_or(1.0);
  if (!(s.beta_fast > 0 && s.beta_slow > 0)) k.bad("rope.scaling.yarn_beta_fast", "betas must be positive");
  s.mscale_all_dim = *log_mul / 0.1;
  s.mscale = s.mscale_all_dim;
}

}  // namespace

bool deepseek2_split_kv_b(const GgufSet& g, const std::string& prefix) {
  const GgufMetadata& m = g.metadata();
  return m.has(prefix + "attention.key_length_mla") || m.has(prefix + "attention.value_length_mla");
}

void read_deepseek2(const GgufSet& g, const std::string& prefix, ModelConfig& c) {
  const Reader k(g.metadata(), prefix);
  read_mla(k, deepseek2_split_kv_b(g, prefix), c);
  read_moe(g, k, c, kGatingSoftmax);
  read_yarn(k, c);
}

void read_deepseek_moe_routing(const GgufSet& g, const std::string& prefix, ModelConfig& c) {
  read_moe(g, Reader(g.metadata(), prefix), c, kGatingSigmoid);
}

}  // namespace dpserve
