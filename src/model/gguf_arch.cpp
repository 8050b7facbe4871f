#include "model/gguf_arch.h"

#include <array>

#include "core/check.h"
#include "model/gguf_deepseek2.h"
#include "model/gguf_set.h"

namespace dpserve {

namespace {

int64_t positive(const GgufMetadata& m, const std::string& key) {
  const auto v = m.get_int(key);
  if (!v) fail("GGUF {}: metadata key \"{}\" is missing", m.where(), key);
  if (*v <= 0 || *v > (int64_t(1) << 32)) fail("GGUF {}: metadata key \"{}\" is {}, out of range", m.where(), key, *v);
  return *v;
}

// Qwen3-MoE: llama.cpp always renormalises the top-k routing weights for this architecture (as
// the released models' norm_topk_prob says), has no dense layers in between and no shared experts.
void read_qwen3moe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  c.n_experts = positive(m, p + "expert_count");
  c.n_experts_per_tok = positive(m, p + "expert_used_count");
  c.moe_ffn = positive(m, p + "expert_feed_forward_length");
  c.routing.normalize = true;
  c.decoder_sparse_step = 1;
  if (c.n_experts_per_tok > c.n_experts)
    fail("GGUF {}: {}expert_used_count {} exceeds expert_count {}", m.where(), p, c.n_experts_per_tok, c.n_experts);
  if (m.get_int(p + "expert_shared_count").value_or(0) != 0)
    fail("GGUF {}: {}expert_shared_count is not 0: shared experts are not supported for qwen3moe", m.where(), p);
}

// deepseek2 (DeepSeek-V2, V2-Lite, V3, R1): llama.cpp's converter permutes nothing; its RoPE for
// this architecture rotates adjacent pairs of q_pe / k_pe, as dpserve's MLA does for every model.
constexpr std::array<GgufArch, 5> kArchs = {{
    {"llama", Arch::Llama, true, false, false, false, false, nullptr},
    {"qwen2", Arch::Qwen2, false, true, false, false, false, nullptr},
    {"qwen3", Arch::Qwen3, false, false, true, false, false, nullptr},
    {"qwen3moe", Arch::Qwen3Moe, false, false, true, true, false, read_qwen3moe},
    {"deepseek2", Arch::DeepseekV2, false, false, false, true, true, read_deepseek2},
}};

}  // namespace

const GgufArch* find_gguf_arch(std::string_view name) {
  for (const GgufArch& a : kArchs)
    if (a.name == name) return &a;
  return nullptr;
}

std::string gguf_arch_names() {
  std::string out;
  for (const GgufArch& a : kArchs) out += (out.empty() ? "" : ", ") + std::string(a.name);
  return out;
}

}  // namespace dpserve
