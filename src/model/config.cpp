#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {

bool ModelConfig::layer_is_moe(int64_t layer) const {
  if (n_experts <= 0) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
  return decoder_sparse_step > 0 && (layer + 1) % decoder_sparse_step == 0;
}

static int64_t req_int(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    fail("config.json: missing or non-integer field \"{}\"", key);
  int64_t v = it->get<int64_t>();
  if (v <= 0) fail("config.json: field \"{}\" must be positive, got {}", key, v);
  return v;
}

// nlohmann converts a float to an integer with a plain cast, undefined beyond the type's range.
static bool int_like(const nlohmann::json& v) {
  if (!v.is_number_float()) return true;
  const double d = v.get<double>();
  return d > -9.2e18 && d < 9.2e18;
}

template <typename T>
static T opt(const nlohmann::json& j, const char* key, T def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  bool ok = true;
  if constexpr (std::is_same_v<T, int64_t>) ok = int_like(*it);
  if constexpr (std::is_same_v<T, std::vector<int64_t>>)
    ok = it->is_array() && std::all_of(it->begin(), it->end(), [](const nlohmann::json& e) { return int_like(e); });
  if (!ok) fail("config.json: field \"{}\" has the wrong type or is out of range", key);
  try {
    return it->get<T>();
  } catch (const std::exception&) {
    fail("config.json: field \"{}\" has the wrong type", key);
  }
}

static std::vector<int32_t> id_list(const nlohmann::json& v) {
  std::vector<int32_t> out;
  if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  if (v.is_array())
    for (const auto& e : v)
      if (e.is_number_integer()) out.push_back(e.get<int32_t>());
  return out;
}

ModelConfig ModelConfig::from_hf_json(const nlohmann::json& j) {
  if (!j.is_object()) fail("config.json: not a JSON object");
  ModelConfig c;
  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    arch = (*it)[0].get<std::string>();
  if (arch.empty()) fail("config.json: missing \"architectures\"");
  c.arch_name = arch;
  if (arch == "LlamaForCausalLM" || arch == "MistralForCausalLM") {
    c.arch = Arch::Llama;
  } else if (arch == "Qwen2ForCausalLM") {
    c.arch = Arch::Qwen2;
    c.qkv_bias = true;
  } else if (arch == "Qwen3ForCausalLM") {
    c.arch = Arch::Qwen3;
    c.qk_norm = true;
  } else if (arch == "Qwen3MoeForCausalLM") {
    c.arch = Arch::Qwen3Moe;
    c.qk_norm = true;
  } else {
    fail("config.json: unsupported architecture \"{}\" (supported: LlamaForCausalLM, MistralForCausalLM, "
         "Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM)",
         arch);
  }
  c.hidden = req_int(j, "hidden_size");
  c.n_layers = req_int(j, "num_hidden_layers");
  c.n_heads = req_int(j, "num_attention_heads");
  c.n_kv_heads = j.contains("num_key_value_heads") ? req_int(j, "num_key_value_heads") : c.n_heads;
  c.vocab = req_int(j, "vocab_size");
  c.head_dim = opt<int64_t>(j, "head_dim", 0);
  if (c.head_dim <= 0) {
    if (c.hidden % c.n_heads != 0) fail("config.json: hidden_size {} is not divisible by num_attention_heads {}", c.hidden, c.n_heads);
    c.head_dim = c.hidden / c.n_heads;
  }
  if (c.n_heads % c.n_kv_heads != 0)
    fail("config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}", c.n_heads, c.n_kv_heads);
  if (c.head_dim % 2 != 0) fail("config.json: head_dim {} must be even for RoPE", c.head_dim);
  c.max_pos = opt<int64_t>(j, "max_position_embeddings", 2048);
  c.rms_eps = opt<double>(j, "rms_norm_eps", 1e-6);
  c.rope_theta = opt<double>(j, "rope_theta", 10000.0);
  // RoPE tables, RMSNorm and the context length are computed from these: reject nonsense here.
  if (c.max_pos <= 0) fail("config.json: max_position_embeddings must be positive, got {}", c.max_pos);
  if (!(c.rms_eps > 0 && std::isfinite(c.rms_eps))) fail("config.json: rms_norm_eps must be positive, got {}", c.rms_eps);
  if (!(c.rope_theta > 0 && std::isfinite(c.rope_theta)))
    fail("config.json: rope_theta must be positive, got {}", c.rope_theta);
  c.tie_embeddings = opt<bool>(j, "tie_word_embeddings", false);
  if (c.arch == Arch::Llama) c.qkv_bias = opt<bool>(j, "attention_bias", false);
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) {
    std::string type = opt<std::string>(*it, "rope_type", opt<std::string>(*it, "type", std::string()));
    if (type == "llama3") {
      c.rope_scaling.type = RopeScaling::Type::Llama3;
      c.rope_scaling.factor = opt<double>(*it, "factor", 8.0);
      c.rope_scaling.low_freq_factor = opt<double>(*it, "low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = opt<double>(*it, "high_freq_factor", 4.0);
      c.rope_scaling.original_max_position_embeddings =
          opt<double>(*it, "original_max_position_embeddings", 8192.0);
    } else if (type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::Linear;
      c.rope_scaling.factor = opt<double>(*it, "factor", 1.0);
    } else if (!type.empty() && type != "default") {
      fail("config.json: unsupported rope_scaling type \"{}\" (supported: llama3, linear)", type);
    }
  }
  if (c.arch == Arch::Qwen3Moe) {
    c.n_experts = req_int(j, "num_experts");
    c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
    c.moe_ffn = req_int(j, "moe_intermediate_size");
    c.norm_topk_prob = opt<bool>(j, "norm_topk_prob", false);
    c.decoder_sparse_step = opt<int64_t>(j, "decoder_sparse_step", 1);
    c.mlp_only_layers = opt<std::vector<int64_t>>(j, "mlp_only_layers", {});
    c.ffn = opt<int64_t>(j, "intermediate_size", 0);
    if (c.n_experts_per_tok > c.n_experts)
      fail("config.json: num_experts_per_tok {} exceeds num_experts {}", c.n_experts_per_tok, c.n_experts);
  } else {
    c.ffn = req_int(j, "intermediate_size");
  }
  if (auto it = j.find("bos_token_id"); it != j.end() && it->is_number_integer()) c.bos_id = it->get<int32_t>();
  if (auto it = j.find("eos_token_id"); it != j.end()) c.eos_ids = id_list(*it);
  std::string dt = opt<std::string>(j, "torch_dtype", "bfloat16");
  c.dtype = dt == "float32" ? DType::F32 : dt == "float16" ? DType::F16 : DType::BF16;
  return c;
}

}  // namespace dpserve
