// The deepseek2 GGUF architecture (DeepSeek-V2, V2-Lite, V3, R1 as llama.cpp's converter writes
// them): the MLA widths, DeepSeekMoE routing and YaRN from `deepseek2.*` metadata, with
// llama.cpp's meaning of each key (docs/models.md lists them and where it differs from the
// Hugging Face config).
#pragma once

#include <string>

#include "model/config.h"

namespace dpserve {

class GgufSet;

// Fills c.mla, head_dim / n_kv_heads, the expert counts and routing, the dense leading layers and
// YaRN. `prefix` is "deepseek2.". Throws dpserve::Error naming the key at fault.
void read_deepseek2(const GgufSet& g, const std::string& prefix, ModelConfig& c);

// llama.cpp's DeepSeekMoE routing keys as deepseek2 reads them (expert_count, expert_used_count,
// expert_feed_forward_length, expert_shared_count, leading_dense_block_count, expert_gating_func,
// expert_weights_norm / _scale, expert_group_count / _used_count, exp_probs_b), sigmoid gating when
// the key is absent: glm4moe's experts. `prefix` is "<arch>.".
void read_deepseek_moe_routing(const GgufSet& g, const std::string& prefix, ModelConfig& c);

// True when the file stores kv_b_proj split and transposed per head (attn_k_b / attn_v_b, what
// llama.cpp's converter writes since it runs the absorbed MLA), marked by attention.key_length_mla;
// false for the older single attn_kv_b.
bool deepseek2_split_kv_b(const GgufSet& g, const std::string& prefix);

}  // namespace dpserve
