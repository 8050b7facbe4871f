// Model hyper-parameters, read from a Hugging Face config.json or a llama2.c header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.h"
#include "kernels/matmul.h"

namespace dpserve {

enum class Arch { Llama, Qwen2, Qwen3, Qwen3Moe, Mixtral, DeepseekV2, DeepseekV3, Gemma2, Gemma3, Phi3, GptOss };

struct RopeScaling {
  enum class Type { None, Linear, Llama3, Yarn, LongRope };
  Type type = Type::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
  // GGUF files (llama.cpp's converter) store llama3-style scaling as one divisor per frequency
  // (`rope_freqs.weight`); applied on top of `type` when present.
  std::vector<float> freq_factors;
  // YaRN: frequency ramp between beta_fast and beta_slow rotations over the original context; cos/sin
  // scaled by mscale(factor, mscale) / mscale(factor, mscale_all_dim) (per-head models: mscale 1 and
  // mscale_all_dim 0 unless both are given, i.e. 0.1 ln(factor) + 1, as transformers does), or by
  // attention_factor when the config sets it. MLA also scales its softmax by mscale(factor, mscale_all_dim)^2.
  double beta_fast = 32;
  double beta_slow = 1;
  double mscale = 1;
  double mscale_all_dim = 0;
  double attention_factor = 0;  // 0: derived from mscale / mscale_all_dim as above
  bool truncate = true;         // round the ramp's ends to whole dimensions (transformers' `truncate`)
  // LongRoPE (Phi-3 / Phi-4's "longrope", formerly "su"): one divisor per frequency for contexts up to
  // original_max_position_embeddings (short) and one for longer (long); cos/sin scaled by
  // attention_factor. use_longrope() copies one set into freq_factors.
  std::vector<float> short_factors, long_factors;

  // LongRoPE: the factor set a server whose sequences reach `context_length` positions runs with: the
  // long set iff the context is longer than the original one (llama.cpp's rule; transformers decides
  // per forward pass from its longest position, which would make a sequence's rotation depend on the
  // batch it runs in). Nothing for other types.
  void use_longrope(int64_t context_length);
};

// 0.1 * m * ln(factor) + 1 for factor > 1, else 1 (YaRN's attention temperature).
double yarn_mscale(double factor, double m);

// Multi-head latent attention (DeepSeek-V2/V3). Keys and values of every head are decompressed from
// one per-token latent: c_kv (kv_lora_rank, RMS-normalised) plus a single rotated key k_pe
// (qk_rope_head_dim) shared by all heads.
struct MlaConfig {
  int64_t q_lora_rank = 0;  // 0: q_proj straight from the hidden state (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool enabled() const { return kv_lora_rank > 0; }
  int64_t q_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

// How a MoE router turns its logits into (expert, weight) pairs.
struct MoeRouting {
  enum class Scoring { Softmax, Sigmoid };
  enum class TopK { Greedy, GroupLimitedGreedy, NoauxTc };
  Scoring scoring = Scoring::Softmax;
  TopK topk = TopK::Greedy;
  int64_t n_group = 1;     // experts are n_group equal groups; only topk_group groups compete
  int64_t topk_group = 1;
  bool normalize = false;  // divide the chosen weights by their sum
  double scaling = 1.0;    // routed_scaling_factor
  // DeepSeek-V3 multiplies by `scaling` after normalising; DeepSeek-V2 only when it does not normalise.
  bool scale_normalized = false;
};

// Qwen2.5-VL's vision tower (config.json "vision_config"); depth 0 for a text-only model.
struct VisionConfig {
  int64_t depth = 0;
  int64_t hidden = 0;
  int64_t ffn = 0;
  int64_t n_heads = 0;
  int64_t patch = 14;
  int64_t merge = 2;           // spatial_merge_size: merge x merge patches become one LM token
  int64_t temporal_patch = 2;
  int64_t in_chans = 3;
  int64_t window_size = 112;   // pixels; attention windows span window_size / patch / merge merged tokens
  std::vector<int64_t> fullatt_blocks;  // blocks attending over the whole image
  int64_t out_hidden = 0;      // the merger's output (the LM's hidden size)
  bool enabled() const { return depth > 0; }
  int64_t head_dim() const { return hidden / n_heads; }
  int64_t patch_row() const { return in_chans * temporal_patch * patch * patch; }
  // Merged tokens along a window's edge.
  int64_t window_tokens() const { return window_size / patch / merge; }
};

// The longest context a model may declare (max_position_embeddings, GGUF context_length): 2^24
// positions. The longest published contexts are about 10M tokens (Llama 4 Scout: 10,485,760 <
// 2^24), and 2^24 is where float32 stops holding every integer, which RoPE angles are computed
// from; a config beyond it is corrupt (2^40 was accepted and became the default context length).
inline constexpr int64_t kMaxPositions = int64_t(1) << 24;

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
  bool o_bias = false;    // gpt-oss: o_proj has a bias too
  // gpt-oss: one learned logit per query head (self_attn.sinks) that joins every softmax as a key
  // with no value, so a head may attend to nothing.
  bool attn_sinks = false;
  bool qk_norm = false;   // Qwen3: per-head RMSNorm of q and k before RoPE
  // OLMo 2, OLMoE: q_norm / k_norm normalise each token's whole q (all heads) and k projection, not each head.
  bool qk_norm_whole = false;
  // OLMo 2: no norm before attention or the MLP; their outputs are normalised (post_attention_layernorm,
  // post_feedforward_layernorm) before they join the residual stream.
  bool post_norms_only = false;
  int64_t sliding_window = 0;  // > 0: a query sees only the last sliding_window positions (Mistral)
  // Which layers the window applies to (Gemma 3 interleaves sliding and full layers); empty: all.
  std::vector<uint8_t> layer_sliding;
  // Llama 4's chunked attention: the window's layers attend within aligned chunks of sliding_window positions
  // (a query at p sees keys [p - p % sliding_window, p]) instead of over the last sliding_window.
  bool attn_chunked = false;
  // > 0: sliding layers rotate with this base and no rope_scaling (Gemma 3's rope_local_base_freq);
  // rope_theta and rope_scaling are then the full layers'.
  double rope_local_theta = 0;
  // Gemma 2 / 3: GeGLU MLP; token embeddings times embed_scale (not the tied LM head); softmax scale
  // attn_scale (0: 1/sqrt(head_dim)); RMSNorm weights stored as offsets from norm_offset; "sandwich"
  // norms: post_attention_layernorm on the attention output and post_feedforward_layernorm on the
  // MLP output before each joins the residual stream (pre_feedforward_layernorm before the MLP).
  GateAct mlp_act = GateAct::Silu;
  float embed_scale = 1.0f;
  double attn_scale = 0;
  float norm_offset = 0.0f;
  bool sandwich_norms = false;
  // > 0: Gemma 2's soft-capping, x -> cap * tanh(x / cap), of the attention scores (before the softmax)
  // and of the final logits.
  float attn_softcap = 0.0f;
  float final_softcap = 0.0f;
  // > 0: Ministral 3's position-dependent query temperature (rope_parameters.llama_4_scaling_beta, Llama 4's
  // rule): after RoPE each query at position p is multiplied by 1 + beta * ln(1 + floor(p / period)), the period
  // being the YaRN original_max_position_embeddings.
  // Llama 4 (attn_temperature_tuning): 1 + attn_scale * ln(1 + floor((p + 1) / floor_scale)) on its NoPE
  // layers only: q_temp_offset 1 and q_temp_nope_only.
  double q_temp_beta = 0;
  double q_temp_period = 0;
  double q_temp_offset = 0;
  bool q_temp_nope_only = false;
  // Llama 4 (use_qk_norm): after RoPE, each head of q and k on the rotated layers divided by its root mean
  // square (rms_norm_eps inside the root; no weights).
  bool qk_l2_norm = false;
  // < head_dim: only the first rotary_dim values of each head rotate, the rest pass through (Phi-4-mini's
  // partial_rotary_factor 0.75); 0: the whole head.
  int64_t rotary_dim = 0;
  // SmolLM3: layers whose queries and keys are not rotated at all (no_rope_layers[l] == 0: "NoPE");
  // empty: every layer rotates.
  std::vector<uint8_t> layer_nope;
  // Granite: each attention and MLP output is multiplied by residual_scale before it joins the
  // residual stream (residual_multiplier), and the LM head's logits are divided by logit_divisor
  // (logits_scaling). Its embedding_multiplier and attention_multiplier are embed_scale and attn_scale.
  double residual_scale = 1.0;
  double logit_divisor = 1.0;
  MlaConfig mla;               // DeepSeek-V2/V3 attention (enabled() == false elsewhere)
  // Multimodal RoPE (Qwen2-VL / Qwen2.5-VL): how many of the head_dim/2 rotary frequencies follow a
  // token's temporal, height and width position, in that order (sums to head_dim/2); empty: 1-D RoPE.
  std::vector<int64_t> mrope_section;
  VisionConfig vision;         // Qwen2.5-VL's vision tower (enabled() == false elsewhere)

  // Mixture of experts (Qwen3-MoE, Mixtral, DeepSeek-V2/V3).
  int64_t n_experts = 0;  // routed experts
  int64_t n_experts_per_tok = 0;
  int64_t moe_ffn = 0;
  MoeRouting routing;
  // gpt-oss: the router and every expert projection carry biases; an expert's gate and up values are
  // clamped to swiglu_limit ([-limit, limit] for up, <= limit for gate) and combined as
  // (up + 1) * gate * sigmoid(1.702 gate) (kernels' GateAct::SwigluOai).
  bool moe_bias = false;
  float swiglu_limit = 0;
  int64_t n_shared_experts = 0;  // DeepSeek: one dense MLP of n_shared * moe_ffn beside the routed ones
  // Qwen2-MoE: one shared expert this wide (mlp.shared_expert) beside the routed ones, its output scaled
  // per token by sigmoid(mlp.shared_expert_gate . x); 0: none.
  int64_t shared_expert_ffn = 0;
  // Llama 4: a chosen expert's router weight multiplies the token's input to that expert, not its output.
  bool moe_weight_input = false;
  // Which layers are sparse. Qwen3-MoE: (layer + 1) % decoder_sparse_step == 0 and not in
  // mlp_only_layers; DeepSeek: layer >= first_k_dense_replace and layer % moe_layer_freq == 0.
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  // DeepSeek-V3's and GLM-4.5's multi-token-prediction layers (num_nextn_predict_layers), stored after
  // the decoder layers as model.layers.{n_layers + i}; only a NEXTN drafter loads them (LoadOptions::nextn).
  int64_t nextn_layers = 0;

  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  DType dtype = DType::BF16;  // dtype of the weights as stored
  // An fp8 checkpoint (model/fp8_checkpoint.h): the elements one weight scale covers (weight_block_size
  // [rows, cols]; one row, or the whole matrix, for compressed-tensors' channel and tensor scales);
  // 0 x 0 for every other checkpoint. compressed-tensors name the scale "<weight>_scale", quant_method
  // fp8 "<weight>_scale_inv".
  int64_t fp8_block_rows = 0, fp8_block_cols = 0;
  bool fp8_compressed_tensors = false;

  bool layer_is_moe(int64_t layer) const;
  bool layer_is_sliding(int64_t layer) const {
    return sliding_window > 0 && (layer_sliding.empty() || layer_sliding[size_t(layer)] != 0);
  }
  bool is_deepseek() const { return arch == Arch::DeepseekV2 || arch == Arch::DeepseekV3; }
  // Families whose multi-token-prediction layers follow DeepSeek-V3's layout (layer num_hidden_layers
  // with enorm, hnorm, eh_proj and shared_head), which NEXTN drafts with.
  bool has_mtp_layer_layout() const {
    return is_deepseek() || arch_name == "Glm4MoeForCausalLM" || arch_name == "glm4moe";
  }
  bool is_gemma() const { return arch == Arch::Gemma2 || arch == Arch::Gemma3; }
  bool is_llama4() const {
    return arch_name == "Llama4ForCausalLM" || arch_name == "Llama4ForConditionalGeneration" || arch_name == "llama4";
  }
  bool layer_has_rope(int64_t layer) const { return layer_nope.empty() || layer_nope[size_t(layer)] == 0; }
  // The width RoPE rotates: MLA's qk_rope_head_dim, rotary_dim, or the whole head.
  int64_t rope_dim() const { return mla.enabled() ? mla.qk_rope_head_dim : rotary_dim > 0 ? rotary_dim : head_dim; }

  // Parses a Hugging Face config.json; throws dpserve::Error naming the missing or bad field.
  static ModelConfig from_hf_json(const nlohmann::json& j);
};

}  // namespace dpserve
