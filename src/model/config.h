// Model hyper-parameters, read from a Hugging Face config.json or a llama2.c header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.h"

namespace dpserve {

enum class Arch { Llama, Qwen2, Qwen3, Qwen3Moe };

struct RopeScaling {
  enum class Type { None, Linear, Llama3 };
  Type type = Type::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
  // GGUF files (llama.cpp's converter) store llama3-style scaling as one divisor per frequency
  // (`rope_freqs.weight`); applied on top of `type` when present.
  std::vector<float> freq_factors;
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;  // as in config.json "architectures"
  int64_t hidden = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;  // dense MLP intermediate size
  int64_t vocab = 0;
  int64_t max_pos = 2048;
  double rms_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool rope_interleaved = false;  // llama2.c rotates adjacent pairs; HF rotates halves
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2
  bool qk_norm = false;   // Qwen3: per-head RMSNorm of q and k before RoPE

  // Mixture of experts (Qwen3-MoE).
  int64_t n_experts = 0;
  int64_t n_experts_per_tok = 0;
  int64_t moe_ffn = 0;
  bool norm_topk_prob = true;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  DType dtype = DType::BF16;  // dtype of the weights as stored

  bool layer_is_moe(int64_t layer) const;

  // Parses a Hugging Face config.json; throws dpserve::Error naming the missing or bad field.
  static ModelConfig from_hf_json(const nlohmann::json& j);
};

}  // namespace dpserve
