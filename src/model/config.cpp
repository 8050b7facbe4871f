#include "model/config.h"
#include "model/fp8_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {

double yarn_mscale(double factor, double m) { return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; }

bool ModelConfig::layer_is_moe(int64_t layer) const {
  if (n_experts <= 0) return false;
  if (is_deepseek()) return layer >= first_k_dense_replace && moe_layer_freq > 0 && layer % moe_layer_freq == 0;
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

// A token id field (bos_token_id, an eos_token_id entry): an integer in [0, vocab).
static int32_t special_id(const nlohmann::json& v, const char* key, int64_t vocab) {
  if (v.is_number_unsigned() || v.is_number_integer()) {
    const bool neg = v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0;
    if (!neg && v.get<uint64_t>() < uint64_t(vocab)) return int32_t(v.get<uint64_t>());
    fail("config.json: {} {} is not a token id in [0, vocab_size = {})", key, v.dump(), vocab);
  }
  fail("config.json: {} must be an integer token id (or a list of them for eos_token_id), got {}", key,
       v.dump().substr(0, 40));
}

// YaRN for per-head attention (Llama / Qwen2 / Qwen3 / Qwen3-MoE ...), with the keys and defaults of
// transformers' "yarn" rope_type: original_max_position_embeddings defaults to max_position_embeddings,
// beta_fast / beta_slow to 32 / 1; the cos/sin magnitude is attention_factor if given, else
// mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are given, else 0.1 ln(factor) + 1.
// `factor` is used as written (transformers 4.51-4.55 replaced it by max_position_embeddings /
// original_max_position_embeddings; the Qwen model cards and later releases use it as given).
static void parse_yarn(const nlohmann::json& j, ModelConfig& c) {
  static const char* const known[] = {"type", "rope_type", "factor", "original_max_position_embeddings",
                                      "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor",
                                      "truncate"};
  for (const auto& item : j.items()) {
    // A plain variable, not a structured binding: clang before 16 cannot capture those in a lambda.
    const std::string& key = item.key();
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return key == k; }) == std::end(known))
      fail("config.json: rope_scaling field \"{}\" is not supported with yarn (supported: {})", key,
           "factor, original_max_position_embeddings, beta_fast, beta_slow, mscale, mscale_all_dim, "
           "attention_factor, truncate");
  }
  auto& r = c.rope_scaling;
  r.type = RopeScaling::Type::Yarn;
  if (!j.contains("factor")) fail("config.json: rope_scaling yarn needs \"factor\"");
  r.factor = opt<double>(j, "factor", 1.0);
  if (!(r.factor >= 1.0 && std::isfinite(r.factor)))
    fail("config.json: rope_scaling.factor must be a number >= 1 for yarn, got {}", r.factor);
  r.original_max_position_embeddings = opt<double>(j, "original_max_position_embeddings", double(c.max_pos));
  if (!(r.original_max_position_embeddings >= 1 && std::isfinite(r.original_max_position_embeddings)))
    fail("config.json: rope_scaling.original_max_position_embeddings must be positive, got {}",
         r.original_max_position_embeddings);
  r.beta_fast = opt<double>(j, "beta_fast", 32.0);
  r.beta_slow = opt<double>(j, "beta_slow", 1.0);
  if (!(r.beta_slow > 0 && r.beta_fast > r.beta_slow && std::isfinite(r.beta_fast)))
    fail("config.json: rope_scaling yarn needs 0 < beta_slow < beta_fast, got beta_fast {} and beta_slow {}",
         r.beta_fast, r.beta_slow);
  const double mscale = opt<double>(j, "mscale", 0.0), mscale_all_dim = opt<double>(j, "mscale_all_dim", 0.0);
  if (mscale != 0 && mscale_all_dim != 0) {
    r.mscale = mscale;
    r.mscale_all_dim = mscale_all_dim;
  } else {
    r.mscale = 1.0;
    r.mscale_all_dim = 0.0;  // mscale(factor, 0) = 1: the magnitude is 0.1 ln(factor) + 1
  }
  r.attention_factor = opt<double>(j, "attention_factor", 0.0);
  if (j.contains("attention_factor") && !(r.attention_factor > 0 && std::isfinite(r.attention_factor)))
    fail("config.json: rope_scaling.attention_factor must be positive, got {}", r.attention_factor);
  r.truncate = opt<bool>(j, "truncate", true);
}

// LongRoPE (Phi-3 / Phi-4: "longrope", "su" or "yarn" in the first Phi-3 configs), as transformers computes
// it: frequency i divided by short_factor[i] or long_factor[i] (one per rotated pair); cos and sin times
// attention_factor, by default sqrt(1 + ln(s) / ln(original)) for s = `factor` or else
// max_position_embeddings / original_max_position_embeddings (Phi3Config's ratio) > 1, else 1.
static void parse_longrope(const nlohmann::json& rs, const nlohmann::json& j, ModelConfig& c) {
  static const char* const known[] = {"type", "rope_type", "short_factor", "long_factor", "factor",
                                      "attention_factor", "original_max_position_embeddings"};
  for (const auto& item : rs.items()) {
    const std::string& key = item.key();
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return key == k; }) == std::end(known))
      fail("config.json: rope_scaling field \"{}\" is not supported with longrope (supported: short_factor, "
           "long_factor, attention_factor, original_max_position_embeddings)",
           key);
  }
  auto& r = c.rope_scaling;
  r.type = RopeScaling::Type::LongRope;
  const int64_t pairs = c.rope_dim() / 2;
  auto factors = [&](const char* key) {
    const auto it = rs.find(key);
    if (it == rs.end() || !it->is_array() || int64_t(it->size()) != pairs)
      fail("config.json: rope_scaling.{} must list {} numbers (one per rotated pair of the {} rotary dimensions)", key,
           pairs, c.rope_dim());
    std::vector<float> out;
    for (const auto& v : *it) {
      if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
        fail("config.json: rope_scaling.{} entries must be positive numbers, got {}", key, v.dump());
      out.push_back(float(v.get<double>()));
    }
    return out;
  };
  r.short_factors = factors("short_factor");
  r.long_factors = factors("long_factor");
  // transformers 5 copies a top-level original_max_position_embeddings over rope_parameters' own.
  r.original_max_position_embeddings = opt<double>(
      j, "original_max_position_embeddings", opt<double>(rs, "original_max_position_embeddings", double(c.max_pos)));
  const double orig = r.original_max_position_embeddings;
  if (!(orig >= 2 && std::isfinite(orig)))
    fail("config.json: original_max_position_embeddings must be at least 2, got {}", orig);
  r.factor = opt<double>(rs, "factor", double(c.max_pos) / orig);  // an explicit factor first, as transformers 5
  if (!(r.factor > 0 && std::isfinite(r.factor))) fail("config.json: rope_scaling.factor must be positive");
  r.attention_factor = opt<double>(rs, "attention_factor", 0.0);
  if (rs.contains("attention_factor") && !(r.attention_factor > 0 && std::isfinite(r.attention_factor)))
    fail("config.json: rope_scaling.attention_factor must be positive, got {}", r.attention_factor);
  if (r.attention_factor == 0)
    r.attention_factor = r.factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(r.factor) / std::log(orig));
  r.use_longrope(c.max_pos);
}

void RopeScaling::use_longrope(int64_t context_length) {
  if (type == Type::LongRope)
    freq_factors = double(context_length) > original_max_position_embeddings ? long_factors : short_factors;
}

// Phi-3 / Phi-4 rotate the first partial_rotary_factor of each head (0.75 in Phi-4-mini).
static void parse_partial_rotary(const nlohmann::json& j, ModelConfig& c, double default_factor) {
  const double f = opt<double>(j, "partial_rotary_factor", default_factor);
  if (f == 1.0) return;
  if (c.arch != Arch::Phi3 && c.arch_name != "Glm4MoeForCausalLM" && c.arch_name != "Glm4ForCausalLM" &&
      c.arch_name != "MiniMaxM2ForCausalLM")
    fail("config.json: partial_rotary_factor {} is not supported for {} (RoPE over the whole head)", f, c.arch_name);
  const auto dim = int64_t(double(c.head_dim) * f);  // transformers truncates too
  if (!(f > 0 && f < 1) || dim < 2 || dim % 2 != 0)
    fail("config.json: partial_rotary_factor {} must leave an even number of rotary dimensions in (0, head_dim {}]", f,
         c.head_dim);
  c.rotary_dim = dim;
}

// The expert groups of group-limited and noaux_tc routing (DeepSeek-V2/V3, GLM-4.5): n_group groups of
// the n_routed_experts, topk_group of them kept.
static void set_expert_groups(ModelConfig& c, int64_t n_group, int64_t topk_group) {
  auto& r = c.routing;
  r.n_group = n_group;
  r.topk_group = topk_group;
  if (r.n_group <= 0 || r.topk_group <= 0) fail("config.json: n_group and topk_group must be positive");
  if (c.n_experts % r.n_group != 0)
    fail("config.json: n_routed_experts {} is not a multiple of n_group {}", c.n_experts, r.n_group);
  if (r.topk_group > r.n_group) fail("config.json: topk_group {} exceeds n_group {}", r.topk_group, r.n_group);
  if (c.n_experts_per_tok > r.topk_group * (c.n_experts / r.n_group))
    fail("config.json: num_experts_per_tok {} exceeds the {} experts of topk_group {} groups", c.n_experts_per_tok,
         r.topk_group * (c.n_experts / r.n_group), r.topk_group);
  if (r.topk == MoeRouting::TopK::NoauxTc && c.n_experts / r.n_group < 2)
    fail("config.json: noaux_tc scores each group by its two best experts; n_group {} leaves fewer", r.n_group);
}

// GLM-4.5 / 4.6 (Glm4MoeConfig): DeepSeek-V3's router (sigmoid scores, e_score_correction_bias for the
// choice, groups scored by their two best, the top k renormalised by norm_topk_prob and always scaled
// by routed_scaling_factor), n_shared_experts shared experts, and the first first_k_dense_replace layers
// dense (intermediate_size wide). Absent keys take Glm4MoeConfig's defaults.
static void parse_glm4_moe(const nlohmann::json& j, ModelConfig& c) {
  c.n_experts = req_int(j, "n_routed_experts");
  c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
  c.moe_ffn = req_int(j, "moe_intermediate_size");
  c.ffn = req_int(j, "intermediate_size");
  c.n_shared_experts = opt<int64_t>(j, "n_shared_experts", 1);
  const int64_t dense = opt<int64_t>(j, "first_k_dense_replace", 1);
  if (c.n_experts <= 0 || c.n_experts_per_tok <= 0 || c.moe_ffn <= 0 || c.n_shared_experts < 0 || dense < 0)
    fail("config.json: n_routed_experts, num_experts_per_tok and moe_intermediate_size must be positive, "
         "n_shared_experts and first_k_dense_replace >= 0");
  for (int64_t l = 0; l < std::min(dense, c.n_layers); ++l) c.mlp_only_layers.push_back(l);
  c.decoder_sparse_step = 1;
  auto& r = c.routing;
  r.scoring = MoeRouting::Scoring::Sigmoid;
  r.topk = MoeRouting::TopK::NoauxTc;
  set_expert_groups(c, opt<int64_t>(j, "n_group", 1), opt<int64_t>(j, "topk_group", 1));
  r.normalize = opt<bool>(j, "norm_topk_prob", true);
  r.scaling = opt<double>(j, "routed_scaling_factor", 1.0);
  if (!(r.scaling > 0 && std::isfinite(r.scaling))) fail("config.json: routed_scaling_factor must be positive");
  r.scale_normalized = true;
  c.nextn_layers = opt<int64_t>(j, "num_nextn_predict_layers", 0);
  if (c.nextn_layers < 0) fail("config.json: num_nextn_predict_layers must be >= 0");
}

// MiniMax-M2 / M2.1 / M2.5 (transformers' modular_minimax_m2; MiniMax's own modeling_minimax_m2 agrees):
// every layer Mixtral's experts (block_sparse_moe.experts.N.w1 / w3 / w2, intermediate_size wide) routed by
// DeepSeek-V3's rule in one group: sigmoid scores, the top k of score + e_score_correction_bias chosen, their
// unbiased scores renormalised; attention with q / k norms over the whole projection (FlexOlmo's,
// qk_norm_type "per_layer") and RoPE on the first rotary_dim of each head. The released config.json still
// carries MiniMax-01's keys; those that would change the model (lightning-attention layers, windows, shared
// experts, another router) are refused by name rather than ignored. Its MTP modules are not read.
static void parse_minimax_m2(const nlohmann::json& j, ModelConfig& c) {
  c.n_experts = req_int(j, "num_local_experts");
  c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
  c.moe_ffn = req_int(j, "intermediate_size");
  if (c.n_experts <= 0 || c.n_experts_per_tok <= 0 || c.moe_ffn <= 0)
    fail("config.json: num_local_experts, num_experts_per_tok and intermediate_size must be positive");
  if (c.n_experts_per_tok > c.n_experts)
    fail("config.json: num_experts_per_tok {} exceeds the {} experts", c.n_experts_per_tok, c.n_experts);
  if (const auto s = opt<std::string>(j, "scoring_func", "sigmoid"); s != "sigmoid")
    fail("config.json: scoring_func \"{}\" is not supported for MiniMaxM2ForCausalLM (only sigmoid, as released)", s);
  if (!opt<bool>(j, "use_routing_bias", true))
    fail("config.json: use_routing_bias false is not supported for MiniMaxM2ForCausalLM (every release routes with "
         "e_score_correction_bias)");
  if (opt<bool>(j, "use_grouped_topk", false))
    fail("config.json: use_grouped_topk true is not supported for MiniMaxM2ForCausalLM (one expert group)");
  if (const double s = opt<double>(j, "routed_scaling_factor", 1.0); s != 1.0)
    fail("config.json: routed_scaling_factor {} is not supported for MiniMaxM2ForCausalLM (its router never "
         "scales)", s);
  auto& r = c.routing;
  r.scoring = MoeRouting::Scoring::Sigmoid;
  r.topk = MoeRouting::TopK::NoauxTc;
  set_expert_groups(c, 1, 1);
  r.normalize = true;
  r.scaling = 1.0;
  if (!opt<bool>(j, "use_qk_norm", true))
    fail("config.json: use_qk_norm false is not supported for MiniMaxM2ForCausalLM (every release has the norms)");
  if (const auto t = opt<std::string>(j, "qk_norm_type", "per_layer"); t != "per_layer")
    fail("config.json: qk_norm_type \"{}\" is not supported for MiniMaxM2ForCausalLM (only per_layer: one norm over "
         "the whole q / k projection)", t);
  c.qk_norm_whole = true;
  if (auto it = j.find("attn_type_list"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || int64_t(it->size()) != c.n_layers)
      fail("config.json: attn_type_list must list one entry per layer ({})", c.n_layers);
    for (size_t l = 0; l < it->size(); ++l)
      if (!int_like((*it)[l]) || (*it)[l].get<int64_t>() != 1)
        fail("config.json: attn_type_list[{}] is not 1: MiniMax-01 / M1's lightning (linear) attention layers are "
             "not supported (MiniMax-M2's layers are all 1, full attention)", l);
  }
  // An int or one per layer (MiniMax-01 wrote [0]); a shared expert would add to every token.
  if (auto it = j.find("shared_intermediate_size"); it != j.end() && !it->is_null()) {
    const nlohmann::json all = it->is_array() ? *it : nlohmann::json::array({*it});
    for (const auto& e : all)
      if (!int_like(e) || e.get<int64_t>() != 0)
        fail("config.json: shared_intermediate_size other than 0 is not supported for MiniMaxM2ForCausalLM (no "
             "shared expert)");
  }
  for (const char* key : {"sliding_window", "attn_window_size"})
    if (auto it = j.find(key); it != j.end() && !it->is_null() && !(int_like(*it) && it->get<int64_t>() <= 0))
      fail("config.json: {} is not supported for MiniMaxM2ForCausalLM (full attention in every layer)", key);
  if (opt<bool>(j, "postnorm", false))
    fail("config.json: postnorm true is not supported for MiniMaxM2ForCausalLM (pre-norm layers)");
  // MiniMax's config names the rotated width; transformers 5 reads it as partial_rotary_factor = rotary_dim /
  // head_dim. One given alone decides; both must agree.
  if (auto it = j.find("rotary_dim"); it != j.end() && !it->is_null()) {
    if (!int_like(*it)) fail("config.json: rotary_dim must be an integer");
    const int64_t d = it->get<int64_t>();
    if (d < 2 || d > c.head_dim || d % 2 != 0)
      fail("config.json: rotary_dim {} must be even and in [2, head_dim {}]", d, c.head_dim);
    if (j.contains("partial_rotary_factor") && c.rope_dim() != d)
      fail("config.json: rotary_dim {} and partial_rotary_factor ({} rotary dimensions) disagree", d, c.rope_dim());
    c.rotary_dim = d == c.head_dim ? 0 : d;
  }
}

// ERNIE 4.5 MoE (Ernie4_5_MoeConfig): layers from moe_layer_start_index to moe_layer_end_index (-1: the
// last) whose (index + 1) is a multiple of moe_layer_interval are sparse, the others dense MLPs of
// intermediate_size. The router (fp32) softmaxes all moe_num_experts logits, picks the top moe_k of
// softmax + moe_statics.e_score_correction_bias, and weighs them by their softmax values divided by
// their sum (clamped below by moe_norm_min, 1e-12, which dpserve does not apply: a larger floor, which a
// sum of k chosen softmax values could reach, is refused); the
// moe_num_shared_experts shared experts (one MLP of that many times moe_intermediate_size) add to every
// token. noaux_tc's selection with one group and softmax scores is exactly that.
static void parse_ernie_moe(const nlohmann::json& j, ModelConfig& c) {
  c.n_experts = req_int(j, "moe_num_experts");
  c.n_experts_per_tok = req_int(j, "moe_k");
  c.moe_ffn = req_int(j, "moe_intermediate_size");
  c.ffn = req_int(j, "intermediate_size");
  c.n_shared_experts = opt<int64_t>(j, "moe_num_shared_experts", 0);
  const int64_t start = opt<int64_t>(j, "moe_layer_start_index", 1);
  int64_t end = opt<int64_t>(j, "moe_layer_end_index", -1);
  if (end == -1) end = c.n_layers - 1;
  c.decoder_sparse_step = opt<int64_t>(j, "moe_layer_interval", 1);
  if (c.n_experts <= 0 || c.n_experts_per_tok <= 0 || c.moe_ffn <= 0 || c.n_shared_experts < 0 || start < 0 ||
      end < start || c.decoder_sparse_step < 1)
    fail("config.json: moe_num_experts, moe_k, moe_intermediate_size and moe_layer_interval must be positive, "
         "moe_num_shared_experts and moe_layer_start_index >= 0, moe_layer_end_index >= moe_layer_start_index");
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (l < start || l > end) c.mlp_only_layers.push_back(l);
  if (const double floor = opt<double>(j, "moe_norm_min", 1e-12); !(floor <= 1e-12))
    fail("config.json: moe_norm_min {} is not supported (1e-12 or less: the released checkpoints' floor under the sum "
         "of the chosen experts' weights, which dpserve does not clamp)", floor);
  auto& r = c.routing;
  r.scoring = MoeRouting::Scoring::Softmax;
  r.topk = MoeRouting::TopK::NoauxTc;
  r.normalize = true;
  r.scale_normalized = true;
  set_expert_groups(c, 1, 1);
}

// DeepSeek-V2/V3 attention: MLA dimensions (num_key_value_heads in their configs is the head count
// after decompression, not a cache layout).
static void parse_mla(const nlohmann::json& j, ModelConfig& c) {
  auto& m = c.mla;
  m.q_lora_rank = opt<int64_t>(j, "q_lora_rank", 0);
  if (m.q_lora_rank < 0) fail("config.json: q_lora_rank must be positive or null, got {}", m.q_lora_rank);
  m.kv_lora_rank = req_int(j, "kv_lora_rank");
  m.qk_nope_head_dim = req_int(j, "qk_nope_head_dim");
  m.qk_rope_head_dim = req_int(j, "qk_rope_head_dim");
  m.v_head_dim = req_int(j, "v_head_dim");
  if (m.qk_rope_head_dim % 2 != 0) fail("config.json: qk_rope_head_dim {} must be even for RoPE", m.qk_rope_head_dim);
  // DeepseekV3Config's rope_interleave (true by default): the released checkpoints' adjacent-pair rotation.
  if (!opt<bool>(j, "rope_interleave", true))
    fail("config.json: rope_interleave false is not supported for {} (its checkpoints rotate adjacent pairs)",
         c.arch_name);
  if (opt<bool>(j, "attention_bias", false))
    fail("config.json: attention_bias true is not supported for {} (no published checkpoint uses it)", c.arch_name);
  c.head_dim = m.q_head_dim();
  c.n_kv_heads = c.n_heads;
}

// DeepSeekMoE: routed + shared experts, and the gate's selection rule. Defaults are those of the
// published configuration classes (V2: softmax / greedy; V3: sigmoid / noaux_tc, normalised).
static void parse_deepseek_moe(const nlohmann::json& j, ModelConfig& c) {
  const bool v3 = c.arch == Arch::DeepseekV3;
  c.n_experts = opt<int64_t>(j, "n_routed_experts", 0);
  if (c.n_experts < 0) fail("config.json: n_routed_experts must be positive or null");
  if (c.n_experts == 0) return;  // a dense model
  c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
  c.moe_ffn = req_int(j, "moe_intermediate_size");
  c.n_shared_experts = opt<int64_t>(j, "n_shared_experts", 0);
  c.first_k_dense_replace = opt<int64_t>(j, "first_k_dense_replace", 0);
  c.nextn_layers = opt<int64_t>(j, "num_nextn_predict_layers", 0);
  if (c.nextn_layers < 0) fail("config.json: num_nextn_predict_layers must be >= 0");
  c.moe_layer_freq = opt<int64_t>(j, "moe_layer_freq", 1);
  if (c.n_shared_experts < 0 || c.first_k_dense_replace < 0 || c.moe_layer_freq < 1)
    fail("config.json: n_shared_experts / first_k_dense_replace must be >= 0 and moe_layer_freq >= 1");
  auto& r = c.routing;
  const std::string scoring = opt<std::string>(j, "scoring_func", v3 ? "sigmoid" : "softmax");
  if (scoring == "softmax") r.scoring = MoeRouting::Scoring::Softmax;
  else if (scoring == "sigmoid") r.scoring = MoeRouting::Scoring::Sigmoid;
  else fail("config.json: scoring_func \"{}\" is not supported (softmax, sigmoid)", scoring);
  // "gready" is how DeepSeek-V2's own modeling code spells greedy.
  const std::string method = opt<std::string>(j, "topk_method", v3 ? "noaux_tc" : "greedy");
  if (method == "greedy" || method == "gready") r.topk = MoeRouting::TopK::Greedy;
  else if (method == "group_limited_greedy") r.topk = MoeRouting::TopK::GroupLimitedGreedy;
  else if (method == "noaux_tc") r.topk = MoeRouting::TopK::NoauxTc;
  else fail("config.json: topk_method \"{}\" is not supported (greedy, group_limited_greedy, noaux_tc)", method);
  if (r.topk != MoeRouting::TopK::Greedy) set_expert_groups(c, req_int(j, "n_group"), req_int(j, "topk_group"));
  // Both reference implementations normalise only when more than one expert is chosen.
  r.normalize = opt<bool>(j, "norm_topk_prob", v3) && c.n_experts_per_tok > 1;
  r.scaling = opt<double>(j, "routed_scaling_factor", 1.0);
  if (!(r.scaling > 0 && std::isfinite(r.scaling))) fail("config.json: routed_scaling_factor must be positive");
  r.scale_normalized = v3;
}

// Mistral / Mixtral attend over a sliding window; Qwen2/Qwen3 configs carry the field but switch it
// on with use_sliding_window. A window the runtime would ignore is an error, never a silent change.
static void parse_sliding_window(const nlohmann::json& j, ModelConfig& c) {
  if (c.arch == Arch::Llama || c.arch == Arch::Mixtral || c.arch == Arch::Phi3) {
    c.sliding_window = opt<int64_t>(j, "sliding_window", 0);
    if (c.sliding_window < 0) fail("config.json: sliding_window must be positive or null, got {}", c.sliding_window);
    if (c.sliding_window >= c.max_pos) c.sliding_window = 0;  // never narrower than the context: no effect
  } else if (!c.is_gemma() && opt<bool>(j, "use_sliding_window", false)) {
    fail("config.json: use_sliding_window true is not supported for {}", c.arch_name);
  }
}

// A soft-capping key: null or absent (with no default) is none; else a positive cap.
static float softcap_of(const nlohmann::json& j, const char* key, double fallback) {
  const auto it = j.find(key);
  if (it != j.end() && it->is_null()) return 0.0f;
  const double cap = it == j.end() ? fallback : opt<double>(j, key, 0.0);
  // transformers divides by the cap whenever it is not None, so 0 is no "off" switch but a division by zero.
  if (!(cap > 0 && std::isfinite(cap))) fail("config.json: {} must be positive or null, got {}", key, cap);
  return float(cap);
}

// config.json's layer_types (`windowed` or "full_attention", one per layer; `windowed` is "sliding_attention"
// but for Llama 4's "chunked_attention") into c.layer_sliding; false when the config has none.
static bool parse_layer_types(const nlohmann::json& j, ModelConfig& c, const char* windowed = "sliding_attention") {
  c.layer_sliding.assign(size_t(c.n_layers), 0);
  const auto it = j.find("layer_types");
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_array() || int64_t(it->size()) != c.n_layers)
    fail("config.json: layer_types must list one entry per layer ({})", c.n_layers);
  for (size_t l = 0; l < it->size(); ++l) {
    const auto& t = (*it)[l];
    if (t == windowed) c.layer_sliding[l] = 1;
    else if (t != "full_attention")
      fail("config.json: layer_types[{}] {} is not supported ({}, full_attention)", l, t.dump(), windowed);
  }
  return true;
}

// sliding_window where its config class defaults to `def` and null means no window (0; OLMo 3, EXAONE 4.0).
static int64_t window_or_none(const nlohmann::json& j, int64_t def) {
  const auto it = j.find("sliding_window");
  const int64_t w = it != j.end() && it->is_null() ? 0 : opt<int64_t>(j, "sliding_window", def);
  if (w < 0) fail("config.json: sliding_window must be positive or null, got {}", w);
  return w;
}

// OLMo 3 (Olmo3ForCausalLM: Olmo2Config plus a window): OLMo 2's layers, of which those layer_types calls
// sliding_attention (without it, all but every fourth) attend over the last sliding_window (4096) positions and
// rotate with plain RoPE of the same base: rope_scaling (the released models' YaRN) is the full layers' only,
// as OLMo 3's release in transformers (4.57: two rotary embeddings, the sliding one "default"), vLLM and
// llama.cpp run it. (Some later transformers versions apply one rotary embedding to every layer.)
static void parse_olmo3(const nlohmann::json& j, ModelConfig& c) {
  c.sliding_window = window_or_none(j, 4096);
  if (!parse_layer_types(j, c))
    for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = (l + 1) % 4 != 0;
  // transformers 5's rope_parameters.sliding_attention.rope_theta arrives as rope_local_base_freq.
  if (c.rope_scaling.type != RopeScaling::Type::None || j.contains("rope_local_base_freq")) {
    c.rope_local_theta = opt<double>(j, "rope_local_base_freq", c.rope_theta);
    if (!(c.rope_local_theta > 0 && std::isfinite(c.rope_local_theta)))
      fail("config.json: the sliding layers' rope_theta must be positive, got {}", c.rope_local_theta);
  }
}

// EXAONE 4.0 (Exaone4ForCausalLM; defaults: Exaone4Config's): OLMo 2's layers (norms on the attention and MLP
// outputs only) with per-head q / k norms; when sliding_window is set, the layers layer_types calls
// sliding_attention attend over the window and rotate, the others attend fully without RoPE ("global NoPE";
// Exaone4Attention rotates only when sliding_window is None or the layer slides). Without layer_types the layers
// follow sliding_window_pattern: a number N (4 by default) makes every N-th layer full, a string such as "LLLG"
// names each layer of a period (L sliding, G full), as llama.cpp's converter reads it.
static void parse_exaone4(const nlohmann::json& j, ModelConfig& c) {
  c.sliding_window = window_or_none(j, 4096);
  if (c.sliding_window == 0) return;  // no window: every layer full, every layer rotates
  if (!parse_layer_types(j, c)) {
    const auto pat = j.find("sliding_window_pattern");
    if (pat != j.end() && pat->is_string()) {
      const std::string s = pat->get<std::string>();
      if (s.empty() || s.find_first_not_of("LG") != std::string::npos)
        fail("config.json: sliding_window_pattern \"{}\" must be a string of L (sliding) and G (full)", s);
      for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = s[size_t(l) % s.size()] == 'L';
    } else {
      const int64_t period = opt<int64_t>(j, "sliding_window_pattern", 4);
      if (period < 1) fail("config.json: sliding_window_pattern must be positive, got {}", period);
      for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = (l + 1) % period != 0;
    }
  }
  c.layer_nope.assign(size_t(c.n_layers), 0);
  for (int64_t l = 0; l < c.n_layers; ++l) c.layer_nope[size_t(l)] = !c.layer_sliding[size_t(l)];
}

// gpt-oss (GptOssForCausalLM; defaults: transformers' GptOssConfig): biases on q/k/v/o, the router
// and the experts, attention sinks, sliding and full layers from layer_types (alternating, sliding
// first, without it), every layer a mixture of experts routed by softmax over the top-k logits
// (the same weights as a softmax over all, renormalised over the top k), clamped SwiGLU.
static void parse_gpt_oss(const nlohmann::json& j, ModelConfig& c) {
  if (!opt<bool>(j, "attention_bias", true))
    fail("config.json: attention_bias false is not supported for GptOssForCausalLM (its checkpoints have biases)");
  c.qkv_bias = c.o_bias = true;
  c.attn_sinks = true;
  c.sliding_window = opt<int64_t>(j, "sliding_window", 128);
  if (c.sliding_window <= 0) fail("config.json: sliding_window must be positive, got {}", c.sliding_window);
  if (!parse_layer_types(j, c))
    for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = l % 2 == 0;
  c.n_experts = req_int(j, "num_local_experts");
  c.n_experts_per_tok = j.contains("num_experts_per_tok") ? req_int(j, "num_experts_per_tok")
                                                          : req_int(j, "experts_per_token");
  c.moe_ffn = req_int(j, "intermediate_size");
  c.routing.normalize = true;
  c.moe_bias = true;
  const double limit = opt<double>(j, "swiglu_limit", 7.0);
  if (!(limit > 0 && std::isfinite(limit))) fail("config.json: swiglu_limit must be positive, got {}", limit);
  c.swiglu_limit = float(limit);
  c.mlp_act = GateAct::SwigluOai;
  if (auto it = j.find("quantization_config"); it != j.end() && it->is_object()) {
    const std::string method = opt<std::string>(*it, "quant_method", std::string());
    if (method != "mxfp4")
      fail("config.json: quantization_config.quant_method \"{}\" is not supported for GptOssForCausalLM (mxfp4, or "
           "none for a dequantized checkpoint)", method);
  }
}

// Gemma 2 and Gemma 3 (Gemma2ForCausalLM / Gemma3ForCausalLM; defaults: the published Gemma2Config /
// Gemma3TextConfig). Layers alternate between a sliding window and full attention: `layer_types`
// says which, or else every `sliding_window_pattern`-th layer is full (Gemma 2: every 2nd). Gemma 3's
// sliding layers rotate with their own base (rope_local_base_freq); Gemma 2's as the full ones.
// Gemma 2 soft-caps the attention scores and the logits (50 and 30 unless its config says otherwise).
static void parse_gemma(const nlohmann::json& j, ModelConfig& c) {
  const bool g2 = c.arch == Arch::Gemma2;
  std::string act = opt<std::string>(j, "hidden_activation", opt<std::string>(j, "hidden_act", "gelu_pytorch_tanh"));
  // gelu_new is the same tanh formula; plain "gelu" is the erf form, which no Gemma uses.
  if (act != "gelu_pytorch_tanh" && act != "gelu_new")
    fail("config.json: hidden_activation \"{}\" is not supported for {} (gelu_pytorch_tanh)", act, c.arch_name);
  c.mlp_act = GateAct::GeluTanh;
  if (g2) {
    c.attn_softcap = softcap_of(j, "attn_logit_softcapping", 50.0);
    c.final_softcap = softcap_of(j, "final_logit_softcapping", 30.0);
  } else {
    for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"})
      if (auto it = j.find(key); it != j.end() && !it->is_null())
        fail("config.json: {} {} is not supported for Gemma 3 (its checkpoints set it to null)", key, it->dump());
  }
  if (g2 && c.rope_scaling.type != RopeScaling::Type::None)
    fail("config.json: rope_scaling is not supported for Gemma2ForCausalLM (published Gemma 2 configs have none)");
  if (opt<bool>(j, "attention_bias", false))
    fail("config.json: attention_bias true is not supported for {} (published Gemma configs have none)", c.arch_name);
  if (opt<bool>(j, "use_bidirectional_attention", false))
    fail("config.json: use_bidirectional_attention true is not supported (a causal language model only)");
  const double scalar = opt<double>(j, "query_pre_attn_scalar", 256.0);
  if (!(scalar > 0 && std::isfinite(scalar)))
    fail("config.json: query_pre_attn_scalar must be positive, got {}", scalar);
  c.attn_scale = 1.0 / std::sqrt(scalar);
  if (g2 && j.contains("rope_local_base_freq"))
    fail("config.json: rope_local_base_freq is not a Gemma2ForCausalLM field (its sliding layers rotate as the "
         "full ones)");
  c.rope_local_theta = g2 ? 0.0 : opt<double>(j, "rope_local_base_freq", 10000.0);
  if (!g2 && !(c.rope_local_theta > 0 && std::isfinite(c.rope_local_theta)))
    fail("config.json: rope_local_base_freq must be positive, got {}", c.rope_local_theta);
  c.norm_offset = 1.0f;  // Gemma's RMSNorm multiplies by (1 + weight)
  c.sandwich_norms = true;
  c.sliding_window = opt<int64_t>(j, "sliding_window", 4096);
  if (c.sliding_window <= 0) fail("config.json: sliding_window must be positive, got {}", c.sliding_window);
  if (g2 && j.contains("sliding_window_pattern"))
    fail("config.json: sliding_window_pattern is not a Gemma2ForCausalLM field (its layers alternate)");
  if (!parse_layer_types(j, c)) {
    const int64_t pattern = g2 ? 2 : opt<int64_t>(j, "sliding_window_pattern", 6);
    if (pattern <= 0) fail("config.json: sliding_window_pattern must be positive, got {}", pattern);
    for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = (l + 1) % pattern != 0;
  }
  // transformers rounds this to the embedding's dtype (Model::load does, knowing the weights).
  c.embed_scale = float(std::sqrt(double(c.hidden)));
}

// Qwen2.5-VL's vision_config (defaults: the published Qwen2_5_VLVisionConfig).
static void parse_vision(const nlohmann::json& j, ModelConfig& c) {
  if (c.arch_name != "Qwen2_5_VLForConditionalGeneration")
    fail("config.json: vision_config is only supported for Qwen2_5_VLForConditionalGeneration");
  auto& v = c.vision;
  v.depth = req_int(j, "depth");
  v.hidden = req_int(j, "hidden_size");
  v.ffn = req_int(j, "intermediate_size");
  v.n_heads = req_int(j, "num_heads");
  v.patch = opt<int64_t>(j, "patch_size", 14);
  v.merge = opt<int64_t>(j, "spatial_merge_size", 2);
  v.temporal_patch = opt<int64_t>(j, "temporal_patch_size", 2);
  v.in_chans = opt<int64_t>(j, "in_chans", opt<int64_t>(j, "in_channels", 3));
  v.window_size = opt<int64_t>(j, "window_size", 112);
  v.fullatt_blocks = opt<std::vector<int64_t>>(j, "fullatt_block_indexes", {});
  v.out_hidden = opt<int64_t>(j, "out_hidden_size", c.hidden);
  if (v.patch <= 0 || v.merge <= 0 || v.temporal_patch <= 0 || v.in_chans <= 0 || v.window_size <= 0)
    fail("config.json: vision_config sizes must be positive");
  if (v.hidden % v.n_heads != 0 || v.head_dim() % 4 != 0)
    fail("config.json: vision_config hidden_size / num_heads must be a multiple of 4 (2-D RoPE)");
  if (v.window_tokens() < 1)
    fail("config.json: vision_config window_size {} is below patch_size x spatial_merge_size", v.window_size);
  if (v.out_hidden != c.hidden)
    fail("config.json: vision_config out_hidden_size {} differs from hidden_size {}", v.out_hidden, c.hidden);
  if (auto act = opt<std::string>(j, "hidden_act", "silu"); act != "silu")
    fail("config.json: vision_config hidden_act \"{}\" is not supported (only silu)", act);
  if (c.mrope_section.empty()) fail("config.json: a Qwen2.5-VL model needs rope_scaling.mrope_section");
}

// transformers 5 saves RoPE as `rope_parameters` (rope_theta inside it; per layer type for models that
// mix them, such as Gemma 3's "full_attention" / "sliding_attention") instead of rope_theta,
// rope_scaling and rope_local_base_freq. Rewritten here into the older keys, which the parser reads;
// without this a folder saved by a current transformers ran with the default base (10000), silently.
static void read_rope_parameters(nlohmann::json& j) {
  const auto it = j.find("rope_parameters");
  if (it == j.end() || it->is_null()) return;
  if (!it->is_object()) fail("config.json: rope_parameters must be an object");
  const nlohmann::json rp = *it;
  j.erase("rope_parameters");
  // One layer type's parameters into rope_theta (or `theta_key`) and rope_scaling.
  auto apply = [&j](nlohmann::json p, const char* theta_key, bool scaling_allowed, const std::string& where) {
    if (!p.is_object()) fail("config.json: {} must be an object", where);
    // Read with the model's other fields (parse_partial_rotary), where the architecture is known.
    if (auto f = p.find("partial_rotary_factor"); f != p.end()) {
      j["partial_rotary_factor"] = *f;
      p.erase("partial_rotary_factor");
    }
    if (auto t = p.find("rope_theta"); t != p.end()) {
      j[theta_key] = *t;
      p.erase("rope_theta");
    }
    const std::string type = p.value("rope_type", p.value("type", std::string("default")));
    if (type == "default" && !p.contains("mrope_section")) return;
    if (!scaling_allowed)
      fail("config.json: {}.rope_type \"{}\" is not supported (sliding layers rotate unscaled)", where, type);
    j["rope_scaling"] = p;
  };
  const bool per_type = rp.contains("full_attention") || rp.contains("sliding_attention");
  if (!per_type) return apply(rp, "rope_theta", true, "rope_parameters");
  for (const auto& item : rp.items())
    if (item.key() != "full_attention" && item.key() != "sliding_attention")
      fail("config.json: rope_parameters.{} is not a layer type dpserve runs (full_attention, sliding_attention)",
           item.key());
  if (rp.contains("full_attention")) apply(rp["full_attention"], "rope_theta", true, "rope_parameters.full_attention");
  if (rp.contains("sliding_attention"))
    apply(rp["sliding_attention"], "rope_local_base_freq", false, "rope_parameters.sliding_attention");
}

// Gemma3TextConfig's defaults: published configs leave them out (the text_config of
// gemma-3-4b-it names only its sizes, sliding_window and rope_scaling). Those of the Gemma-only
// keys are in parse_gemma.
static nlohmann::json gemma3_text_defaults() {
  return {{"vocab_size", 262208},    {"hidden_size", 2304},         {"intermediate_size", 9216},
          {"num_hidden_layers", 26}, {"num_attention_heads", 8},    {"num_key_value_heads", 4},
          {"head_dim", 256},         {"rms_norm_eps", 1e-6},        {"max_position_embeddings", 131072},
          {"rope_theta", 1000000.0}, {"tie_word_embeddings", true}, {"bos_token_id", 2},
          {"eos_token_id", 1}};
}

// no_rope_layers (1: the layer rotates, 0: NoPE), or without it every no_rope_layer_interval-th layer NoPE
// (SmolLM3, Llama 4).
static void read_no_rope_layers(const nlohmann::json& j, ModelConfig& c) {
  c.layer_nope.assign(size_t(c.n_layers), 0);
  const auto it = j.find("no_rope_layers");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_array() || int64_t(it->size()) < c.n_layers)
      fail("config.json: no_rope_layers must list a 0 or 1 for each of the {} layers", c.n_layers);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const auto& v = (*it)[size_t(l)];
      if (!v.is_number_integer() || (v.get<int64_t>() != 0 && v.get<int64_t>() != 1))
        fail("config.json: no_rope_layers[{}] must be 1 (RoPE) or 0 (no RoPE), got {}", l, v.dump());
      c.layer_nope[size_t(l)] = v.get<int64_t>() == 0;
    }
    return;
  }
  const int64_t interval = opt<int64_t>(j, "no_rope_layer_interval", 4);
  if (interval < 1) fail("config.json: no_rope_layer_interval must be positive, got {}", interval);
  for (int64_t l = 0; l < c.n_layers; ++l) c.layer_nope[size_t(l)] = (l + 1) % interval == 0;
}

// SmolLM3 (SmolLM3ForCausalLM; defaults: transformers' SmolLM3Config): Llama with some layers left
// unrotated ("NoPE"): no_rope_layers holds 1 for a layer that applies RoPE and 0 for one that does not
// (at least one entry per layer); without it every no_rope_layer_interval-th layer (default 4) is NoPE.
// Its sliding window applies to the NoPE layers only and is off in the published checkpoints.
static void parse_smollm3(const nlohmann::json& j, ModelConfig& c) {
  if (opt<bool>(j, "use_sliding_window", false))
    fail("config.json: use_sliding_window true is not supported for SmolLM3ForCausalLM (the published checkpoints "
         "attend over the whole context)");
  read_no_rope_layers(j, c);
}

// Llama 4's feed-forward blocks (Llama4TextConfig): the layers moe_layers lists (without it every
// interleave_moe_layer_step-th) are num_local_experts experts intermediate_size wide, the top num_experts_per_tok
// of the router logits chosen and weighted by their sigmoids, each weight multiplying its expert's input
// (Llama4TextMoe), plus one always-on shared expert as wide; the others are dense MLPs intermediate_size_mlp wide.
static void parse_llama4_moe(const nlohmann::json& j, ModelConfig& c) {
  c.ffn = req_int(j, "intermediate_size_mlp");
  c.moe_ffn = req_int(j, "intermediate_size");
  c.n_experts = req_int(j, "num_local_experts");
  c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
  c.routing.scoring = MoeRouting::Scoring::Sigmoid;
  c.n_shared_experts = 1;
  c.moe_weight_input = true;
  if (auto it = j.find("moe_layers"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) fail("config.json: moe_layers must be a list of layer indices");
    std::vector<uint8_t> sparse(size_t(c.n_layers), 0);
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.n_layers)
        fail("config.json: moe_layers entry {} is not a layer index (0 to {})", v.dump(), c.n_layers - 1);
      sparse[size_t(v.get<int64_t>())] = 1;
    }
    for (int64_t l = 0; l < c.n_layers; ++l)
      if (!sparse[size_t(l)]) c.mlp_only_layers.push_back(l);
  } else {
    c.decoder_sparse_step = opt<int64_t>(j, "interleave_moe_layer_step", 1);
    if (c.decoder_sparse_step < 1)
      fail("config.json: interleave_moe_layer_step must be positive, got {}", c.decoder_sparse_step);
  }
}

// Llama 4's attention (Llama4TextAttention): RoPE on adjacent pairs (complex multiplication) on the layers
// no_rope_layers marks 1 (without it all but every no_rope_layer_interval-th, 4); on those, with use_qk_norm,
// q and k L2-normalised per head after RoPE; on the NoPE ones, with attn_temperature_tuning, queries times
// 1 + attn_scale * ln(1 + floor((p + 1) / floor_scale)). Layers layer_types calls chunked_attention (by
// default the rotated ones) attend within aligned chunks of attention_chunk_size positions.
static void parse_llama4_attention(const nlohmann::json& j, ModelConfig& c) {
  c.rope_interleaved = true;
  nlohmann::json nope = j;
  if (auto it = nope.find("no_rope_layers"); it != nope.end() && it->is_array() && it->empty()) nope.erase(it);
  read_no_rope_layers(nope, c);
  c.qk_l2_norm = opt<bool>(j, "use_qk_norm", true);
  // The released configs say 4 here (transformers tests it for truth, as Python does).
  bool tune = true;
  if (const auto it = j.find("attn_temperature_tuning"); it != j.end()) {
    if (it->is_boolean()) tune = it->get<bool>();
    else if (it->is_number()) tune = it->get<double>() != 0;
    else if (it->is_null()) tune = false;
    else fail("config.json: attn_temperature_tuning must be a boolean or a number, got {}", it->dump());
  }
  if (tune) {
    c.q_temp_beta = opt<double>(j, "attn_scale", 0.1);
    c.q_temp_period = double(opt<int64_t>(j, "floor_scale", 8192));
    c.q_temp_offset = 1;
    c.q_temp_nope_only = true;
    if (!(c.q_temp_beta >= 0 && std::isfinite(c.q_temp_beta)))
      fail("config.json: attn_scale must be >= 0, got {}", c.q_temp_beta);
    if (c.q_temp_period < 1) fail("config.json: floor_scale must be positive, got {}", c.q_temp_period);
  }
  if (!parse_layer_types(j, c, "chunked_attention"))
    for (size_t l = 0; l < c.layer_sliding.size(); ++l) c.layer_sliding[l] = c.layer_nope[l] ? 0 : 1;
  if (std::none_of(c.layer_sliding.begin(), c.layer_sliding.end(), [](uint8_t s) { return s != 0; })) return;
  const auto it = j.find("attention_chunk_size");
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 1)
    fail("config.json: attention_chunk_size must be a positive integer when layers are chunked_attention, got {}",
         it == j.end() ? "nothing" : it->dump());
  c.sliding_window = it->get<int64_t>();
  c.attn_chunked = true;
}

// Granite 3.x (GraniteForCausalLM; defaults: transformers' GraniteConfig, every multiplier 1): Llama
// with the token embeddings times embedding_multiplier, attention scores times attention_multiplier
// (in place of 1/sqrt(head_dim)), every attention and MLP output times residual_multiplier before the
// residual add, and the logits divided by logits_scaling.
static void parse_granite(const nlohmann::json& j, ModelConfig& c) {
  auto positive = [&](const char* key) {
    const double v = opt<double>(j, key, 1.0);
    if (!(v > 0 && std::isfinite(v))) fail("config.json: {} must be a positive number, got {}", key, v);
    return v;
  };
  c.embed_scale = float(positive("embedding_multiplier"));
  c.attn_scale = positive("attention_multiplier");
  c.residual_scale = positive("residual_multiplier");
  c.logit_divisor = positive("logits_scaling");
}

// Gemma2Config's defaults (those of gemma-2-2b), read the same way.
static nlohmann::json gemma2_defaults() {
  return {{"vocab_size", 256000},    {"hidden_size", 2304},         {"intermediate_size", 9216},
          {"num_hidden_layers", 26}, {"num_attention_heads", 8},    {"num_key_value_heads", 4},
          {"head_dim", 256},         {"rms_norm_eps", 1e-6},        {"max_position_embeddings", 8192},
          {"rope_theta", 10000.0},   {"tie_word_embeddings", true}, {"bos_token_id", 2},
          {"eos_token_id", 1}};
}

// Gemma3ForConditionalGeneration (Gemma 3 4B and larger as published): its language model, read
// from text_config, for text only (the vision tower is not run; Model::load drops its tensors).
// The special ids and dtype sit at the top level of these configs.
static nlohmann::json gemma3_text_config(const nlohmann::json& j) {
  auto it = j.find("text_config");
  if (it == j.end() || !it->is_object()) fail("config.json: Gemma3ForConditionalGeneration without text_config");
  nlohmann::json t = *it;
  for (const char* key : {"bos_token_id", "eos_token_id", "torch_dtype", "dtype"})
    if (!t.contains(key) && j.contains(key)) t[key] = j[key];
  t["architectures"] = nlohmann::json::array({"Gemma3ForCausalLM"});
  return t;
}

// MistralConfig's defaults (transformers' configuration_mistral), which a Mistral3ForConditionalGeneration
// text_config leaves out.
static nlohmann::json mistral_defaults() {
  return {{"vocab_size", 32000},          {"hidden_size", 4096},         {"intermediate_size", 14336},
          {"num_hidden_layers", 32},      {"num_attention_heads", 32},   {"num_key_value_heads", 8},
          {"hidden_act", "silu"},         {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},        {"sliding_window", 4096},      {"tie_word_embeddings", false},
          {"bos_token_id", 1},            {"eos_token_id", 2}};
}

// Ministral 3 (Ministral3ForCausalLM, and Ministral-3 / Devstral-2-Small's text_config model_type ministral3):
// Mistral's layer with Ministral3Config's defaults (head_dim 128, rms_norm_eps 1e-5, no window; without
// rope_parameters, YaRN factor 16 over 16384 positions of base 1e6 with mscale = mscale_all_dim = 1 and
// llama_4_scaling_beta 0.1). Ministral3Attention multiplies each query after RoPE by Llama 4's temperature
// 1 + llama_4_scaling_beta * ln(1 + floor(p / original_max_position_embeddings)); that key (and the
// max_position_embeddings rope validation ignores) leaves rope_scaling here for parse_hf_config.
static nlohmann::json ministral3_config(nlohmann::json t) {
  const bool rope_given = t.contains("rope_parameters") || t.contains("rope_scaling") || t.contains("rope_theta");
  read_rope_parameters(t);
  if (!rope_given) {
    t["rope_theta"] = 1000000.0;
    t["rope_scaling"] = {{"type", "yarn"}, {"factor", 16.0}, {"original_max_position_embeddings", 16384},
                         {"beta_fast", 32.0}, {"beta_slow", 1.0}, {"mscale", 1.0}, {"mscale_all_dim", 1.0},
                         {"llama_4_scaling_beta", 0.1}};
  }
  if (auto rs = t.find("rope_scaling"); rs != t.end() && rs->is_object()) {
    if (auto b = rs->find("llama_4_scaling_beta"); b != rs->end()) {
      t["llama_4_scaling_beta"] = *b;
      rs->erase(b);
    }
    rs->erase("max_position_embeddings");
  }
  nlohmann::json with_defaults = {{"head_dim", 128}, {"rms_norm_eps", 1e-5}, {"max_position_embeddings", 262144},
                                  {"sliding_window", nullptr}, {"tie_word_embeddings", false}, {"bos_token_id", 1},
                                  {"eos_token_id", 2}, {"hidden_act", "silu"}};
  with_defaults.update(t);
  with_defaults["architectures"] = nlohmann::json::array({"Ministral3ForCausalLM"});
  return with_defaults;
}

// Llama 4 (Llama4ForCausalLM, and Llama4ForConditionalGeneration's text_config, model_type llama4_text):
// Llama4TextConfig's defaults for absent keys (Llama 4 Scout's shape).
static nlohmann::json llama4_text_config(nlohmann::json t) {
  read_rope_parameters(t);
  nlohmann::json with_defaults = {
      {"vocab_size", 202048},        {"hidden_size", 5120},          {"intermediate_size", 8192},
      {"intermediate_size_mlp", 16384}, {"num_hidden_layers", 48},   {"num_attention_heads", 40},
      {"num_key_value_heads", 8},    {"head_dim", 128},              {"hidden_act", "silu"},
      {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-5},   {"bos_token_id", 1},
      {"eos_token_id", 2},           {"tie_word_embeddings", false}, {"rope_theta", 500000.0},
      {"num_experts_per_tok", 1},    {"num_local_experts", 16},      {"attention_chunk_size", 8192}};
  with_defaults.update(t);
  with_defaults["architectures"] = nlohmann::json::array({"Llama4ForCausalLM"});
  return with_defaults;
}

// Llama4ForConditionalGeneration (Llama 4 Scout and Maverick as published): its language model, for text
// only (the vision model and projector are not run; Model::load drops their tensors).
static nlohmann::json llama4_mm_text_config(const nlohmann::json& j) {
  auto it = j.find("text_config");
  if (it == j.end() || !it->is_object()) fail("config.json: Llama4ForConditionalGeneration without text_config");
  nlohmann::json t = *it;
  if (const std::string type = opt<std::string>(t, "model_type", "llama4_text"); type != "llama4_text")
    fail("config.json: text_config.model_type \"{}\" is not supported for Llama4ForConditionalGeneration (only "
         "llama4_text)", type);
  for (const char* key : {"bos_token_id", "eos_token_id", "torch_dtype", "dtype"})
    if (!t.contains(key) && j.contains(key)) t[key] = j[key];
  return llama4_text_config(t);
}

// Mistral3ForConditionalGeneration (Mistral Small 3.1 / 3.2, Magistral Small, Devstral Small as
// published; Ministral 3 with text_config model_type ministral3): its language model, read from text_config
// with its config class's defaults, for text only (the Pixtral vision tower is not run; Model::load drops
// its tensors). The special ids and dtype may sit at the top level.
static nlohmann::json mistral3_text_config(const nlohmann::json& j) {
  auto it = j.find("text_config");
  if (it == j.end() || !it->is_object()) fail("config.json: Mistral3ForConditionalGeneration without text_config");
  nlohmann::json t = *it;
  const std::string type = opt<std::string>(t, "model_type", "mistral");
  if (type != "mistral" && type != "ministral3")
    fail("config.json: text_config.model_type \"{}\" is not supported for Mistral3ForConditionalGeneration (only "
         "mistral, ministral3)", type);
  for (const char* key : {"bos_token_id", "eos_token_id", "torch_dtype", "dtype"})
    if (!t.contains(key) && j.contains(key)) t[key] = j[key];
  if (type == "ministral3") return ministral3_config(t);
  read_rope_parameters(t);
  nlohmann::json with_defaults = mistral_defaults();
  with_defaults.update(t);
  with_defaults["architectures"] = nlohmann::json::array({"MistralForCausalLM"});
  return with_defaults;
}

static ModelConfig parse_hf_config(const nlohmann::json& j) {
  ModelConfig c;
  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    arch = (*it)[0].get<std::string>();
  if (arch.empty()) fail("config.json: missing \"architectures\"");
  c.arch_name = arch;
  struct Known {
    const char* name;
    Arch arch;
  };
  static constexpr Known kArchs[] = {
      {"LlamaForCausalLM", Arch::Llama},           {"MistralForCausalLM", Arch::Llama},
      {"Qwen2ForCausalLM", Arch::Qwen2},           {"Qwen3ForCausalLM", Arch::Qwen3},
      {"Qwen3MoeForCausalLM", Arch::Qwen3Moe},     {"MixtralForCausalLM", Arch::Mixtral},
      // Qwen1.5-MoE / Qwen2-MoE: Qwen2's attention, Qwen3-MoE's routing, plus a sigmoid-gated shared expert.
      {"Qwen2MoeForCausalLM", Arch::Qwen2},
      {"DeepseekV2ForCausalLM", Arch::DeepseekV2}, {"DeepseekV3ForCausalLM", Arch::DeepseekV3},
      // GLM-4.7-Flash: transformers' Glm4MoeLite is DeepSeek-V3's config, MLA attention and V3-routed MoE
      // under GLM's names (llama.cpp converts it to deepseek2).
      {"Glm4MoeLiteForCausalLM", Arch::DeepseekV3},
      // A Qwen2 language model (q/k/v biases, M-RoPE) behind a vision tower (model/vision_tower.h).
      {"Qwen2_5_VLForConditionalGeneration", Arch::Qwen2},
      {"Gemma2ForCausalLM", Arch::Gemma2},
      {"Gemma3ForCausalLM", Arch::Gemma3},
      // Phi-3, Phi-3.5, Phi-4 and Phi-4-mini: fused qkv_proj / gate_up_proj (split as they load).
      {"Phi3ForCausalLM", Arch::Phi3},
      // gpt-oss-20b / 120b: experts as MXFP4 blocks, or dequantized (split per expert as they load).
      {"GptOssForCausalLM", Arch::GptOss},
      // Llama with NoPE layers (SmolLM3) or with multipliers on embeddings, scores, residuals and
      // logits (Granite 3.x).
      {"SmolLM3ForCausalLM", Arch::Llama},
      {"GraniteForCausalLM", Arch::Llama},
      // Granite's multipliers with Mixtral's routing, experts stacked JetMoE-style (split as they load).
      {"GraniteMoeForCausalLM", Arch::Llama},
      // OLMo 2: Llama with q / k norms over the whole projection and norms after attention and the MLP.
      {"Olmo2ForCausalLM", Arch::Llama},
      // OLMo 3: OLMo 2 with three sliding-window layers in four, rope_scaling on the full ones only.
      {"Olmo3ForCausalLM", Arch::Llama},
      // EXAONE 4.0: OLMo 2's post-norms with per-head q / k norms, sliding layers and unrotated full ones.
      {"Exaone4ForCausalLM", Arch::Llama},
      // Seed-OSS-36B: Llama with q/k/v biases (attention_bias, true by default) and an explicit head_dim.
      {"SeedOssForCausalLM", Arch::Llama},
      // Ministral 3: Mistral with YaRN and Llama 4's query temperature (ministral3_config).
      {"Ministral3ForCausalLM", Arch::Llama},
      // OLMoE: OLMo 2's whole-projection q / k norms (pre-norms kept) over Qwen3-MoE-routed experts.
      {"OlmoeForCausalLM", Arch::Llama},
      // GLM-4.5 / 4.6: Llama-shaped attention (q/k/v biases, half of each head rotated, optional per-head
      // q / k norms) over DeepSeek-V3's routing and shared experts.
      {"Glm4MoeForCausalLM", Arch::Llama},
      // GLM-4-0414 (9B, 32B) and GLM-Z1: q/k/v biases, half of each head rotated on adjacent pairs, norms on
      // the attention and MLP outputs too, gate and up fused in gate_up_proj (split as they load).
      {"Glm4ForCausalLM", Arch::Llama},
      // ERNIE 4.5 (0.3B) and ERNIE 4.5 MoE (21B-A3B, 300B-A47B): Llama's attention with RoPE on adjacent
      // pairs; the MoE layers softmax-routed with a selection bias and shared experts (parse_ernie_moe).
      {"Ernie4_5ForCausalLM", Arch::Llama},
      {"Ernie4_5_MoeForCausalLM", Arch::Llama},
      // MiniMax-M2 / M2.1 / M2.5: Mixtral's experts behind a sigmoid router with a selection bias, q / k
      // norms over the whole projection, half of each head rotated (parse_minimax_m2).
      {"MiniMaxM2ForCausalLM", Arch::Mixtral},
      // Llama 4 (Scout, Maverick): NoPE layers with a query temperature, chunked attention and L2 q / k norms
      // on the rotated ones, top-k sigmoid-weighted expert inputs plus a shared expert (llama4_text_config).
      {"Llama4ForCausalLM", Arch::Llama},
  };
  const Known* known = nullptr;
  for (const Known& k : kArchs)
    if (arch == k.name) known = &k;
  if (!known) {
    std::string names;
    for (const Known& k : kArchs) names += std::string(names.empty() ? "" : ", ") + k.name;
    // Read through their language model's config (from_hf_json).
    names += ", Gemma3ForConditionalGeneration, Mistral3ForConditionalGeneration, Llama4ForConditionalGeneration";
    fail("config.json: unsupported architecture \"{}\" (supported: {})", arch, names);
  }
  c.arch = known->arch;
  c.qkv_bias = c.arch == Arch::Qwen2;
  const bool gemma = c.is_gemma();
  const bool exaone4 = arch == "Exaone4ForCausalLM";
  c.qk_norm = c.arch == Arch::Qwen3 || c.arch == Arch::Qwen3Moe || c.arch == Arch::Gemma3 || exaone4;
  if (auto act = opt<std::string>(j, "hidden_act", "silu"); act != "silu" && !gemma)
    fail("config.json: hidden_act \"{}\" is not supported (only silu)", act);
  c.hidden = req_int(j, "hidden_size");
  c.n_layers = req_int(j, "num_hidden_layers");
  c.n_heads = req_int(j, "num_attention_heads");
  c.n_kv_heads = j.contains("num_key_value_heads") ? req_int(j, "num_key_value_heads") : c.n_heads;
  c.vocab = req_int(j, "vocab_size");
  const bool glm4 = arch == "Glm4ForCausalLM";
  const bool minimax_m2 = arch == "MiniMaxM2ForCausalLM", seed_oss = arch == "SeedOssForCausalLM";
  // Glm4Config's, MiniMaxM2Config's and SeedOssConfig's default head_dim is 128.
  c.head_dim = opt<int64_t>(j, "head_dim", glm4 || minimax_m2 || seed_oss ? 128 : 0);
  if (c.is_deepseek()) {
    parse_mla(j, c);
  } else if (c.head_dim <= 0) {
    if (c.hidden % c.n_heads != 0) fail("config.json: hidden_size {} is not divisible by num_attention_heads {}", c.hidden, c.n_heads);
    c.head_dim = c.hidden / c.n_heads;
  }
  if (c.n_heads % c.n_kv_heads != 0)
    fail("config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}", c.n_heads, c.n_kv_heads);
  if (c.head_dim % 2 != 0) fail("config.json: head_dim {} must be even for RoPE", c.head_dim);
  const bool glm4_moe = arch == "Glm4MoeForCausalLM";
  const bool ernie_moe = arch == "Ernie4_5_MoeForCausalLM", ernie = ernie_moe || arch == "Ernie4_5ForCausalLM";
  // Glm4MoeConfig's and Glm4Config's default: half of each head rotates.
  parse_partial_rotary(j, c, glm4_moe || glm4 ? 0.5 : 1.0);
  c.max_pos = opt<int64_t>(j, "max_position_embeddings", 2048);
  const bool olmo3 = arch == "Olmo3ForCausalLM";
  const bool olmo2 = arch == "Olmo2ForCausalLM" || olmo3, olmoe = arch == "OlmoeForCausalLM";
  // Olmo2Config's, OlmoeConfig's and Glm4MoeConfig's default is 1e-5.
  c.rms_eps = opt<double>(j, "rms_norm_eps", olmo2 || olmoe || ernie || exaone4 || arch == "Glm4MoeForCausalLM" ? 1e-5
                                             : arch == "Glm4ForCausalLM"                  ? 1.5625e-7  // Glm4Config's
                                                                                          : 1e-6);
  const bool smollm3 = arch == "SmolLM3ForCausalLM", granite_moe = arch == "GraniteMoeForCausalLM";
  const bool llama4 = arch == "Llama4ForCausalLM";
  const bool granite = arch == "GraniteForCausalLM" || granite_moe;
  // SmolLM3Config's default_theta; Ernie4_5Config's and Ernie4_5_MoeConfig's 500000; MiniMaxM2Config's 5e6.
  c.rope_theta = opt<double>(j, "rope_theta", smollm3      ? 2000000.0
                                              : ernie      ? 500000.0
                                              : minimax_m2 ? 5000000.0
                                                           : 10000.0);
  // RoPE tables, RMSNorm and the context length are computed from these: reject nonsense here.
  if (c.max_pos <= 0 || c.max_pos > kMaxPositions)
    fail("config.json: max_position_embeddings must be in [1, 2^24 = {}], got {}", kMaxPositions, c.max_pos);
  if (!(c.rms_eps > 0 && std::isfinite(c.rms_eps))) fail("config.json: rms_norm_eps must be positive, got {}", c.rms_eps);
  if (!(c.rope_theta > 0 && std::isfinite(c.rope_theta)))
    fail("config.json: rope_theta must be positive, got {}", c.rope_theta);
  c.tie_embeddings = opt<bool>(j, "tie_word_embeddings", smollm3 || ernie);
  // LlamaAttention gives q, k, v and o biases alike when attention_bias is set.
  if (c.arch == Arch::Llama) c.qkv_bias = c.o_bias = opt<bool>(j, "attention_bias", false);
  if (seed_oss) {
    // SeedOssAttention: q/k/v biases with attention_bias (true by default), o_proj's with attention_out_bias
    // (false by default, as released).
    c.qkv_bias = opt<bool>(j, "attention_bias", true);
    c.o_bias = opt<bool>(j, "attention_out_bias", false);
  }
  if (glm4_moe) {
    c.o_bias = false;  // Glm4MoeAttention's o_proj has no bias whatever attention_bias says
    c.qk_norm = opt<bool>(j, "use_qk_norm", false);
  }
  if (glm4) {
    // GlmAttention: q/k/v biases (attention_bias, true by default), none on o_proj; RoPE on adjacent pairs
    // (cos / sin repeat-interleaved); Glm4DecoderLayer's four norms are Gemma's sandwich without the +1.
    c.qkv_bias = opt<bool>(j, "attention_bias", true);
    c.o_bias = false;
    c.rope_interleaved = true;
    c.sandwich_norms = true;
  }
  if (ernie) {
    // Ernie4_5Attention: RoPE on adjacent pairs over the whole head (cos / sin repeat-interleaved); its
    // projections (and the MLPs') take use_bias, false in every released checkpoint.
    c.rope_interleaved = true;
    if (opt<bool>(j, "use_bias", false))
      fail("config.json: use_bias true is not supported for {} (no released checkpoint has the biases)", arch);
  }
  if (opt<bool>(j, "mlp_bias", false))
    fail("config.json: mlp_bias true is not supported for {} (no published checkpoint uses it)", c.arch_name);
  c.qk_norm_whole = olmo2 || olmoe;
  c.post_norms_only = olmo2 || exaone4;
  // OlmoeAttention clamps q, k and v to [-clip_qkv, clip_qkv] when it is set; the released checkpoints
  // have null (OLMo 2's attention has no such clamp).
  if (auto it = j.find("clip_qkv"); olmoe && it != j.end() && !it->is_null())
    fail("config.json: clip_qkv is not supported for {} (only null: no released checkpoint clamps)", arch);
  if (smollm3) parse_smollm3(j, c);
  else if (granite) parse_granite(j, c);
  // SmolLM3 / Granite / OLMo / GLM's attention: no window; MiniMax-M2's keys are checked by parse_minimax_m2.
  else if (!olmo2 && !olmoe && !glm4_moe && !glm4 && !minimax_m2 && !exaone4 && !llama4) parse_sliding_window(j, c);
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
    } else if (type == "yarn" && c.is_deepseek()) {
      auto& r = c.rope_scaling;
      r.type = RopeScaling::Type::Yarn;
      r.factor = opt<double>(*it, "factor", 1.0);
      r.original_max_position_embeddings = opt<double>(*it, "original_max_position_embeddings", 4096.0);
      r.beta_fast = opt<double>(*it, "beta_fast", 32.0);
      r.beta_slow = opt<double>(*it, "beta_slow", 1.0);
      r.mscale = opt<double>(*it, "mscale", 1.0);
      r.mscale_all_dim = opt<double>(*it, "mscale_all_dim", 0.0);
      if (!(r.factor > 0 && r.original_max_position_embeddings > 0 && r.beta_fast > 0 && r.beta_slow > 0))
        fail("config.json: rope_scaling yarn needs positive factor, original_max_position_embeddings, beta_fast "
             "and beta_slow");
    } else if (type == "yarn" && c.arch != Arch::Phi3) {
      parse_yarn(*it, c);
    } else if (c.arch == Arch::Phi3 && (type == "longrope" || type == "su" || type == "yarn")) {
      // Phi3Config reads the first Phi-3 configs' "su" and "yarn" as longrope.
      parse_longrope(*it, j, c);
    } else if (type == "mrope" || (it->contains("mrope_section") && (type.empty() || type == "default"))) {
      // Multimodal RoPE: plain frequencies, chosen per section from 3-D positions.
      c.mrope_section = opt<std::vector<int64_t>>(*it, "mrope_section", {});
      int64_t sum = 0;
      for (int64_t s : c.mrope_section) {
        if (s < 0) fail("config.json: rope_scaling.mrope_section entries must be non-negative");
        sum += s;
      }
      if (c.mrope_section.size() != 3 || sum != c.head_dim / 2)
        fail("config.json: rope_scaling.mrope_section must be 3 numbers summing to head_dim / 2 = {}", c.head_dim / 2);
    } else if (!type.empty() && type != "default") {
      fail("config.json: unsupported rope_scaling type \"{}\" for {} (supported: {})", type, arch,
           c.arch == Arch::Phi3 ? "longrope" : "llama3, linear, yarn");
    }
  }
  const bool qwen2_moe = arch == "Qwen2MoeForCausalLM";
  // Qwen2MoeConfig's qkv_bias (true by default; the released checkpoints have the biases).
  if (qwen2_moe) c.qkv_bias = opt<bool>(j, "qkv_bias", true);
  if (c.arch == Arch::Qwen3Moe || qwen2_moe) {
    c.n_experts = req_int(j, "num_experts");
    c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
    c.moe_ffn = req_int(j, "moe_intermediate_size");
    c.routing.normalize = opt<bool>(j, "norm_topk_prob", false);
    c.decoder_sparse_step = opt<int64_t>(j, "decoder_sparse_step", 1);
    c.mlp_only_layers = opt<std::vector<int64_t>>(j, "mlp_only_layers", {});
    c.ffn = opt<int64_t>(j, "intermediate_size", 0);
    if (qwen2_moe) {
      c.shared_expert_ffn = req_int(j, "shared_expert_intermediate_size");
      if (c.shared_expert_ffn <= 0)
        fail("config.json: shared_expert_intermediate_size must be positive, got {}", c.shared_expert_ffn);
    }
  } else if (minimax_m2) {
    parse_minimax_m2(j, c);
  } else if (c.arch == Arch::Mixtral) {
    // Every layer sparse; softmax over all experts, the top k renormalised (MixtralSparseMoeBlock).
    c.n_experts = req_int(j, "num_local_experts");
    c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
    c.moe_ffn = req_int(j, "intermediate_size");
    c.routing.normalize = true;
  } else if (c.is_deepseek()) {
    c.ffn = req_int(j, "intermediate_size");
    parse_deepseek_moe(j, c);
  } else if (c.arch == Arch::GptOss) {
    parse_gpt_oss(j, c);
  } else if (granite_moe) {
    // GraniteMoeMoE: every layer sparse, intermediate_size wide experts, the top k of the router
    // logits softmaxed (Mixtral's renormalised softmax, the same weights).
    c.n_experts = req_int(j, "num_local_experts");
    c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
    c.moe_ffn = req_int(j, "intermediate_size");
    c.routing.normalize = true;
    if (opt<int64_t>(j, "shared_intermediate_size", 0) != 0)
      fail("config.json: shared_intermediate_size is not supported for GraniteMoeForCausalLM (no shared experts)");
  } else if (glm4_moe) {
    parse_glm4_moe(j, c);
  } else if (ernie_moe) {
    parse_ernie_moe(j, c);
  } else if (llama4) {
    parse_llama4_moe(j, c);
  } else if (olmoe) {
    // OlmoeSparseMoeBlock: every layer sparse, intermediate_size wide experts, softmax over all the
    // router logits, the top k renormalised only with norm_topk_prob (false by default).
    c.n_experts = req_int(j, "num_experts");
    c.n_experts_per_tok = req_int(j, "num_experts_per_tok");
    c.moe_ffn = req_int(j, "intermediate_size");
    c.routing.normalize = opt<bool>(j, "norm_topk_prob", false);
  } else {
    c.ffn = req_int(j, "intermediate_size");
  }
  if (c.n_experts_per_tok > c.n_experts)
    fail("config.json: num_experts_per_tok {} exceeds the {} experts", c.n_experts_per_tok, c.n_experts);
  // Special ids index the vocabulary (the sampler's EOS check, BOS in prompts): one outside it was
  // accepted (1e9, -7) and then never matched, or was written into prompts. null means none.
  if (auto it = j.find("bos_token_id"); it != j.end() && !it->is_null()) c.bos_id = special_id(*it, "bos_token_id", c.vocab);
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_array()) {
      for (const auto& e : *it) c.eos_ids.push_back(special_id(e, "eos_token_id", c.vocab));
    } else {
      c.eos_ids.push_back(special_id(*it, "eos_token_id", c.vocab));
    }
  }
  if (auto it = j.find("vision_config"); it != j.end() && it->is_object()) parse_vision(*it, c);
  else if (arch == "Qwen2_5_VLForConditionalGeneration") fail("config.json: {} without vision_config", arch);
  // transformers 5 writes "dtype" where earlier releases wrote "torch_dtype".
  std::string dt = opt<std::string>(j, "torch_dtype", opt<std::string>(j, "dtype", "bfloat16"));
  c.dtype = dt == "float32" ? DType::F32 : dt == "float16" ? DType::F16 : DType::BF16;
  if (gemma) parse_gemma(j, c);
  if (olmo3) parse_olmo3(j, c);
  if (arch == "Ministral3ForCausalLM") {
    if (c.rope_scaling.type != RopeScaling::Type::Yarn)
      fail("config.json: Ministral3ForCausalLM needs yarn rope_parameters: their original_max_position_embeddings is "
           "the query temperature's period");
    if (!j.contains("llama_4_scaling_beta"))
      fail("config.json: rope_parameters.llama_4_scaling_beta is missing (Ministral3Attention scales every query by "
           "it)");
    c.q_temp_beta = opt<double>(j, "llama_4_scaling_beta", 0.0);
    if (!(c.q_temp_beta >= 0 && std::isfinite(c.q_temp_beta)))
      fail("config.json: rope_parameters.llama_4_scaling_beta must be >= 0, got {}", c.q_temp_beta);
    c.q_temp_period = c.rope_scaling.original_max_position_embeddings;
  }
  if (exaone4) parse_exaone4(j, c);
  if (llama4) parse_llama4_attention(j, c);
  return c;
}

static ModelConfig parse_any_hf_config(const nlohmann::json& config);

ModelConfig ModelConfig::from_hf_json(const nlohmann::json& config) {
  ModelConfig c = parse_any_hf_config(config);
  read_quantization_config(config, c);
  return c;
}

static ModelConfig parse_any_hf_config(const nlohmann::json& config) {
  if (!config.is_object()) fail("config.json: not a JSON object");
  nlohmann::json j = config;
  read_rope_parameters(j);
  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    arch = (*it)[0].get<std::string>();
  if (arch == "Mistral3ForConditionalGeneration") {
    ModelConfig c = parse_hf_config(mistral3_text_config(j));
    c.arch_name = arch;
    return c;
  }
  if (arch == "Ministral3ForCausalLM") return parse_hf_config(ministral3_config(j));
  if (arch == "Llama4ForCausalLM") return parse_hf_config(llama4_text_config(j));
  if (arch == "Llama4ForConditionalGeneration") {
    ModelConfig c = parse_hf_config(llama4_mm_text_config(j));
    c.arch_name = arch;
    return c;
  }
  const bool gemma_mm = arch == "Gemma3ForConditionalGeneration";
  if (!gemma_mm && arch != "Gemma3ForCausalLM" && arch != "Gemma2ForCausalLM") return parse_hf_config(j);
  nlohmann::json with_defaults = arch == "Gemma2ForCausalLM" ? gemma2_defaults() : gemma3_text_defaults();
  nlohmann::json text = gemma_mm ? gemma3_text_config(j) : j;
  read_rope_parameters(text);
  with_defaults.update(text);
  ModelConfig c = parse_hf_config(with_defaults);
  c.arch_name = arch;
  return c;
}

}  // namespace dpserve
