// The GGUF architectures dpserve runs (`general.architecture`) and what each one means for the
// layers: one row per architecture, so a new one (e.g. deepseek2) is a row plus its extra keys.
#pragma once

#include <string>
#include <string_view>

#include "model/config.h"

namespace dpserve {

class GgufSet;

struct GgufArch {
  std::string_view name;  // general.architecture
  Arch arch;
  // llama.cpp's converter permutes the Q/K rows of these models so that GGML's RoPE on adjacent
  // pairs equals Hugging Face's rotate-half; dpserve then runs RoPE on adjacent pairs too.
  bool rope_interleaved;
  bool qkv_bias;  // attn_{q,k,v}.bias required (Qwen2); llama allows them, others reject them
  bool qk_norm;   // attn_q_norm / attn_k_norm required (Qwen3)
  // Layers with ffn_gate_inp route to the stacked experts ffn_*_exps, the others are dense. (llama
  // has no such mix: its read_extra makes every layer sparse when expert_count > 0, i.e. Mixtral.)
  bool moe;
  // Multi-head latent attention (deepseek2): read_extra sets the head widths, the KV layout and
  // the RoPE width from the MLA keys instead of the common key_length / head_count_kv rules.
  bool mla;
  // Architecture-specific metadata beyond the common keys (may be null); `prefix` is "<arch>.".
  // Gets the whole set because some facts are in the tensors (deepseek2's exp_probs_b).
  void (*read_extra)(const GgufSet& g, const std::string& prefix, ModelConfig& c);
};

// The row for `name`, or null when dpserve does not run that architecture.
const GgufArch* find_gguf_arch(std::string_view name);

// "llama, qwen2, qwen3, ..., olmo2, olmoe" (error messages and docs).
std::string gguf_arch_names();

}  // namespace dpserve
