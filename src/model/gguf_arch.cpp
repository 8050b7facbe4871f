#include "model/gguf_arch.h"

#include <array>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "model/gguf_deepseek2.h"
#include "model/gguf_set.h"
#include "model/gguf_types.h"

namespace dpserve {

namespace {

int64_t positive(const GgufMetadata& m, const std::string& key) {
  const auto v = m.get_int(key);
  if (!v) fail("GGUF {}: metadata key \"{}\" is missing", m.where(), key);
  if (*v <= 0 || *v > (int64_t(1) << 32)) fail("GGUF {}: metadata key \"{}\" is {}, out of range", m.where(), key, *v);
  return *v;
}

// llama.cpp's sliding / full layers: every attention.sliding_window_pattern-th layer (`period`
// when absent) attends fully, the others over the window (the last of each period is the full one).
void read_sliding_pattern(const GgufMetadata& m, const std::string& p, int64_t period_default, ModelConfig& c) {
  const int64_t period = m.get_int(p + "attention.sliding_window_pattern").value_or(period_default);
  if (period <= 0 || period > (int64_t(1) << 32))
    fail("GGUF {}: {}attention.sliding_window_pattern {} is out of range", m.where(), p, period);
  c.layer_sliding.assign(size_t(c.n_layers), 0);
  for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = l % period < period - 1;
}

// attention.sliding_window, when the file has one (false when not, or 0), and which layers slide:
// attention.sliding_window_pattern as one bool per layer (true: sliding; llama.cpp's converters write it so for
// olmo2 and exaone4) or as read_sliding_pattern's period (`period_default` when absent).
bool read_window_layers(const GgufMetadata& m, const std::string& p, int64_t period_default, ModelConfig& c) {
  const int64_t window = m.get_int(p + "attention.sliding_window").value_or(0);
  if (window < 0 || window > (int64_t(1) << 32))
    fail("GGUF {}: {}attention.sliding_window {} is out of range", m.where(), p, window);
  if (window == 0) return false;
  c.sliding_window = window;
  const std::string key = p + "attention.sliding_window_pattern";
  const GgufValue* v = m.find(key);
  if (!v || v->type != GgufType::Array) {
    read_sliding_pattern(m, p, period_default, c);
    return true;
  }
  if (v->elem != GgufType::Bool || int64_t(v->count) != c.n_layers)
    fail("GGUF {}: {} must be one bool per layer ({}), or a period", m.where(), key, c.n_layers);
  c.layer_sliding.assign(size_t(c.n_layers), 0);
  for (int64_t l = 0; l < c.n_layers; ++l) c.layer_sliding[size_t(l)] = v->int_at(uint64_t(l)) != 0;
  return true;
}

// expert_count and expert_used_count (at most expert_count).
void read_expert_counts(const GgufMetadata& m, const std::string& p, ModelConfig& c) {
  c.n_experts = positive(m, p + "expert_count");
  c.n_experts_per_tok = positive(m, p + "expert_used_count");
  if (c.n_experts_per_tok > c.n_experts)
    fail("GGUF {}: {}expert_used_count {} exceeds expert_count {}", m.where(), p, c.n_experts_per_tok, c.n_experts);
}

// The routing keys llama.cpp does not read for the architectures that route by a softmax over all
// experts, the top k renormalised or not (`normalize`): one asking for another rule is refused by
// name (refuse(key, why)) rather than run with this one.
template <class Refuse>
void refuse_other_routing(const GgufMetadata& m, const std::string& p, bool normalize, const Refuse& refuse) {
  if (m.get_int(p + "expert_group_count").value_or(0) > 1) refuse("expert_group_count", "asks for expert groups");
  if (const auto f = m.get_int(p + "expert_gating_func"); f && *f != 1)
    refuse("expert_gating_func", fmt::format("is {}, not 1 (softmax)", *f));
  if (m.has(p + "expert_weights_norm") && m.get_bool(p + "expert_weights_norm").value_or(normalize) != normalize)
    refuse("expert_weights_norm", normalize ? "is false" : "is true");
  if (const auto s = m.get_float(p + "expert_weights_scale"); s && *s != 0.0 && *s != 1.0)
    refuse("expert_weights_scale", fmt::format("is {}", *s));
}

// Qwen3-MoE: llama.cpp always renormalises the top-k routing weights for this architecture (as
// the released models' norm_topk_prob says), has no dense layers in between and no shared experts.
void read_qwen3moe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_expert_counts(m, p, c);
  c.moe_ffn = positive(m, p + "expert_feed_forward_length");
  c.routing.normalize = true;
  c.decoder_sparse_step = 1;
  if (m.get_int(p + "expert_shared_count").value_or(0) != 0)
    fail("GGUF {}: {}expert_shared_count is not 0: shared experts are not supported for qwen3moe", m.where(), p);
}

// Every layer a MoE whose experts are feed_forward_length wide (blk.N.ffn_gate_inp + the stacked
// ffn_*_exps), softmax over the router logits, the top expert_used_count weighted as they are or
// renormalised to sum 1 (`normalize`), as llama.cpp's build_moe_ffn runs `model` (its norm_w for the
// architecture). llama.cpp reads no other routing key for these architectures; one that would ask
// for another rule (groups, shared experts, sigmoid, the other normalisation, a scale) is refused by
// name rather than run with this one.
static void read_all_sparse(const GgufMetadata& m, const std::string& p, ModelConfig& c, bool normalize,
                            const char* model) {
  read_expert_counts(m, p, c);
  c.moe_ffn = c.ffn;  // llama.cpp sizes these experts by feed_forward_length
  c.ffn = 0;          // no dense layer: every layer has a router (a missing one is a missing tensor)
  c.routing.normalize = normalize;
  c.decoder_sparse_step = 1;
  auto refuse = [&](const char* key, const std::string& why) {
    fail("GGUF {}: metadata key \"{}{}\" {}: {} MoE files ({}) route by softmax over all experts, top "
         "expert_used_count {}, as llama.cpp does",
         m.where(), p, key, why, c.arch_name, model, normalize ? "renormalised" : "not renormalised");
  };
  if (const auto f = m.get_int(p + "expert_feed_forward_length"); f && *f != c.moe_ffn)
    refuse("expert_feed_forward_length", fmt::format("is {} but {} experts are feed_forward_length ({}) wide", *f,
                                                     c.arch_name, c.moe_ffn));
  for (const char* k : {"expert_shared_count", "expert_shared_feed_forward_length"})
    if (m.get_int(p + k).value_or(0) != 0)
      refuse(k, fmt::format("asks for shared experts, which dpserve does not run for {}", c.arch_name));
  refuse_other_routing(m, p, normalize, refuse);
}

// qwen2moe (Qwen1.5-MoE, Qwen2-57B-A14B): experts expert_feed_forward_length wide (llama.cpp's default
// without it: feed_forward_length / expert_used_count), softmax over all router logits, the top k not
// renormalised (llama.cpp's build_moe_ffn for qwen2moe, whatever the model's norm_topk_prob was), and
// one shared expert expert_shared_feed_forward_length wide (default: feed_forward_length) whose output
// is scaled by sigmoid(ffn_gate_inp_shexp . x). llama.cpp makes every layer sparse.
void read_qwen2moe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_expert_counts(m, p, c);
  c.moe_ffn = m.has(p + "expert_feed_forward_length") ? positive(m, p + "expert_feed_forward_length")
                                                      : c.ffn / c.n_experts_per_tok;
  c.shared_expert_ffn =
      m.has(p + "expert_shared_feed_forward_length") ? positive(m, p + "expert_shared_feed_forward_length") : c.ffn;
  if (c.moe_ffn <= 0 || c.shared_expert_ffn <= 0)
    fail("GGUF {}: {}feed_forward_length is needed to size the experts", m.where(), p);
  c.routing.normalize = false;
  c.decoder_sparse_step = 1;
  auto refuse = [&](const char* key, const std::string& why) {
    fail("GGUF {}: metadata key \"{}{}\" {}: qwen2moe files route by softmax over all experts, top "
         "expert_used_count not renormalised, plus one gated shared expert, as llama.cpp does",
         m.where(), p, key, why);
  };
  if (m.get_int(p + "expert_shared_count").value_or(1) != 1)
    refuse("expert_shared_count", "is not 1");
  refuse_other_routing(m, p, false, refuse);
}

// llama with <arch>.expert_count > 0 is how llama.cpp stores Mixtral (its converter writes
// MixtralForCausalLM as `llama`): every layer sparse, the top k renormalised.
void read_llama(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  const auto n = m.get_int(p + "expert_count");
  if (!n || *n == 0) {
    if (m.get_int(p + "expert_used_count").value_or(0) != 0)
      fail("GGUF {}: {}expert_used_count is set but {}expert_count is {}", m.where(), p, p, n ? "0" : "missing");
    return;
  }
  read_all_sparse(m, p, c, true, c.arch_name == "llama" ? "Mixtral" : "Granite-MoE");
}

// What llama.cpp's gemma2 and gemma3 share: GeGLU, sandwich norms, embeddings times sqrt(hidden)
// (unrounded), queries scaled by 1/sqrt(head_dim), or 1/sqrt(hidden / heads) for the 27B model
// (`big_layers` layers), as Google's reference code says.
static void read_gemma_common(ModelConfig& c, int64_t big_layers) {
  c.mlp_act = GateAct::GeluTanh;
  c.sandwich_norms = true;
  c.embed_scale = float(std::sqrt(double(c.hidden)));
  c.attn_scale = c.n_layers == big_layers ? 1.0 / std::sqrt(double(c.hidden / c.n_heads))
                                          : 1.0 / std::sqrt(double(c.head_dim));
}

// gemma3 (Gemma 3 text), as llama.cpp runs it: with attention.sliding_window, every
// attention.sliding_window_pattern-th layer (default 6) attends fully and the others over the window
// with RoPE base rope.freq_base_swa (default 10000) unscaled; without it every layer is full. The
// converter stores the norms with Gemma's +1 already added; embeddings are scaled by sqrt(hidden).
// The files carry no query_pre_attn_scalar: llama.cpp scales queries by 1/sqrt(head_dim), except
// for the 62-layer model (27B), whose 1/sqrt(hidden / heads) it knows from Google's reference code.
void read_gemma3(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_gemma_common(c, 62);
  if (const auto cap = m.get_float(p + "final_logit_softcapping"); cap && *cap != 0.0)
    fail("GGUF {}: {}final_logit_softcapping {} is not supported (Gemma 3 has none)", m.where(), p, *cap);
  const auto window = m.get_int(p + "attention.sliding_window");
  if (!window || *window <= 0) return;
  if (*window > (int64_t(1) << 32))
    fail("GGUF {}: {}attention.sliding_window {} is out of range", m.where(), p, *window);
  c.sliding_window = *window;
  read_sliding_pattern(m, p, 6, c);
  c.rope_local_theta = m.get_float(p + "rope.freq_base_swa").value_or(10000.0);
  if (!(c.rope_local_theta > 0 && std::isfinite(c.rope_local_theta)))
    fail("GGUF {}: {}rope.freq_base_swa must be positive, got {}", m.where(), p, c.rope_local_theta);
}

// gemma2, as llama.cpp runs it: Gemma 3's layout without q / k norms; attention.sliding_window
// (default 4096) on every attention.sliding_window_pattern-th layer but the last of each period
// (default 2: the even layers), rotating with rope.freq_base_swa if given, else as the full layers;
// attention scores and final logits soft-capped (attn_logit_softcapping / final_logit_softcapping,
// defaults 50 and 30, which llama.cpp always applies to this architecture). Queries are scaled by
// 1/sqrt(head_dim), 1/sqrt(hidden / heads) for the 46-layer model (27B).
void read_gemma2(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_gemma_common(c, 46);
  auto cap = [&](const char* key, double fallback) {
    const double v = m.get_float(p + key).value_or(fallback);
    if (!(v > 0 && std::isfinite(v))) fail("GGUF {}: {}{} must be positive, got {}", m.where(), p, key, v);
    return float(v);
  };
  c.attn_softcap = cap("attn_logit_softcapping", 50.0);
  c.final_softcap = cap("final_logit_softcapping", 30.0);
  const int64_t window = m.get_int(p + "attention.sliding_window").value_or(4096);
  if (window <= 0 || window > (int64_t(1) << 32))
    fail("GGUF {}: {}attention.sliding_window {} is out of range", m.where(), p, window);
  c.sliding_window = window;
  read_sliding_pattern(m, p, 2, c);
  if (const auto base = m.get_float(p + "rope.freq_base_swa"); base && *base != c.rope_theta) {
    if (!(*base > 0 && std::isfinite(*base)))
      fail("GGUF {}: {}rope.freq_base_swa must be positive, got {}", m.where(), p, *base);
    c.rope_local_theta = *base;
  }
}

// phi3 (Phi-3, Phi-3.5, Phi-4, Phi-4-mini): LongRoPE as llama.cpp's converter stores it, the two
// factor sets as rope_factors_long / rope_factors_short (F32, one per rotated pair) with
// rope.scaling.original_context_length and the cos/sin factor rope.scaling.attn_factor (llama.cpp's
// default 1 when absent). attention.sliding_window is Phi-3's own window (0 or none: none), which
// dpserve applies as transformers does (this llama.cpp release switches Phi SWA off).
void read_phi3(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  if (const auto w = m.get_int(p + "attention.sliding_window"); w && *w > 0 && *w < c.max_pos) c.sliding_window = *w;
  const GgufTensorInfo* lf = g.tensor("rope_factors_long.weight");
  const GgufTensorInfo* sf = g.tensor("rope_factors_short.weight");
  const auto attn = m.get_float(p + "rope.scaling.attn_factor");
  if (!lf && !sf) {
    if (attn && *attn != 1.0)
      fail("GGUF {}: {}rope.scaling.attn_factor {} without rope_factors_long / rope_factors_short is not supported",
           m.where(), p, *attn);
    return;
  }
  if (!lf || !sf)
    fail("GGUF {}: tensor \"{}\" is missing (LongRoPE needs both factor sets)", m.where(),
         lf ? "rope_factors_short.weight" : "rope_factors_long.weight");
  auto& r = c.rope_scaling;
  if (r.type != RopeScaling::Type::None || !r.freq_factors.empty())
    fail("GGUF {}: rope_factors_long / rope_factors_short with another RoPE scaling (rope.scaling.type or "
         "rope_freqs.weight)", m.where());
  const int64_t pairs = c.rope_dim() / 2;
  auto factors = [&](const GgufTensorInfo* t) {
    if (t->type != 0 || t->ne.size() != 1 || t->ne[0] != pairs)
      fail("GGUF {}: {} must be F32 of {} elements (the rotated width / 2), is {} of {}", t->file, t->name, pairs,
           ggml_type_name(t->type), t->numel());
    std::vector<float> out(static_cast<size_t>(pairs));
    std::memcpy(out.data(), t->data, sizeof(float) * size_t(pairs));
    for (float f : out)
      if (!(f > 0 && std::isfinite(f))) fail("GGUF {}: {} holds {}, factors must be positive", t->file, t->name, f);
    return out;
  };
  r.type = RopeScaling::Type::LongRope;
  r.long_factors = factors(lf);
  r.short_factors = factors(sf);
  const auto orig = m.get_int(p + "rope.scaling.original_context_length");
  if (!orig || *orig < 2 || *orig > kMaxPositions)
    fail("GGUF {}: {}rope.scaling.original_context_length is missing or out of range (LongRoPE needs it)", m.where(),
         p);
  r.original_max_position_embeddings = double(*orig);
  r.factor = double(c.max_pos) / double(*orig);
  r.attention_factor = attn.value_or(1.0);
  if (!(r.attention_factor > 0 && std::isfinite(r.attention_factor)))
    fail("GGUF {}: {}rope.scaling.attn_factor must be positive, got {}", m.where(), p, r.attention_factor);
  r.use_longrope(c.max_pos);
}

// gpt-oss (llama.cpp's LLM_ARCH_OPENAI_MOE): every layer a MoE of expert_feed_forward_length-wide
// experts with biases (ffn_*_exps.bias) and a router bias, the top expert_used_count router logits
// softmaxed (llama.cpp's SOFTMAX_WEIGHT gating, which is transformers' top-k then softmax); q / k / v
// / o biases; attention sinks (attn_sinks); attention.sliding_window on the layers
// attention.sliding_window_pattern says (default 2: the even layers), RoPE on halves. llama.cpp's
// clamped SwiGLU has gpt-oss's constants built in (alpha 1.702, limit 7); the file has no key for them.
// YaRN as llama.cpp runs it, the ramp's ends rounded to whole dimensions: the file has no key for
// transformers' `truncate`, which gpt-oss's config sets false (its HF folder runs unrounded; on the
// released shape the two differ on a few of the 32 frequency pairs by a fraction of the ramp).
void read_gpt_oss(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_expert_counts(m, p, c);
  c.moe_ffn = positive(m, p + "expert_feed_forward_length");
  c.ffn = 0;  // no dense layer
  c.decoder_sparse_step = 1;
  c.routing.normalize = true;
  c.moe_bias = true;
  c.qkv_bias = c.o_bias = c.attn_sinks = true;
  c.mlp_act = GateAct::SwigluOai;
  c.swiglu_limit = 7.0f;
  if (m.get_int(p + "expert_shared_count").value_or(0) != 0)
    fail("GGUF {}: {}expert_shared_count is not 0: gpt-oss has no shared experts", m.where(), p);
  const int64_t window = positive(m, p + "attention.sliding_window");
  c.sliding_window = window;
  read_sliding_pattern(m, p, 2, c);
  if (const auto base = m.get_float(p + "rope.freq_base_swa"); base && *base != c.rope_theta)
    fail("GGUF {}: {}rope.freq_base_swa {} differs from rope.freq_base {}: gpt-oss rotates every layer alike",
         m.where(), p, *base, c.rope_theta);
}

// A dense llama-family file: an expert_count other than 0 is refused (these architectures have no
// experts in llama.cpp).
void refuse_experts(const GgufMetadata& m, const std::string& p) {
  if (m.get_int(p + "expert_count").value_or(0) != 0)
    fail("GGUF {}: {}expert_count is set: {} models are dense", m.where(), p, p.substr(0, p.size() - 1));
}

// SmolLM3 (llama.cpp's smollm3): Llama whose every fourth layer (3, 7, ...) leaves q and k unrotated.
// The file has no key for it: llama.cpp fixes the step at 4, as SmolLM3-3B's no_rope_layers are.
void read_smollm3(const GgufSet& g, const std::string& p, ModelConfig& c) {
  refuse_experts(g.metadata(), p);
  c.layer_nope.assign(size_t(c.n_layers), 0);
  for (int64_t l = 0; l < c.n_layers; ++l) c.layer_nope[size_t(l)] = (l + 1) % 4 == 0;
}

// Granite 3.x (llama.cpp's granite): the multipliers of GraniteConfig under llama.cpp's names:
// embedding_scale, attention.scale, residual_scale (absent or 0: none, and for attention.scale
// 1/sqrt(head_dim), as llama.cpp reads them) and logit_scale (required, the logits' divisor).
// rope.scaling.finetuned false is llama.cpp's switch for Granite models without RoPE, which
// GraniteForCausalLM does not have.
void read_granite_scales(const GgufMetadata& m, const std::string& p, ModelConfig& c) {
  auto scale = [&](const std::string& key, bool required) -> double {
    const auto v = m.get_float(p + key);
    if (!v && required) fail("GGUF {}: metadata key \"{}{}\" is missing", m.where(), p, key);
    if (v && !(*v >= 0 && std::isfinite(*v))) fail("GGUF {}: {}{} is {}, out of range", m.where(), p, key, *v);
    return v.value_or(0.0);
  };
  if (const double e = scale("embedding_scale", false); e > 0) c.embed_scale = float(e);
  c.attn_scale = scale("attention.scale", false);  // 0: 1/sqrt(head_dim)
  if (const double r = scale("residual_scale", false); r > 0) c.residual_scale = r;
  c.logit_divisor = scale("logit_scale", true);
  if (c.logit_divisor == 0) fail("GGUF {}: {}logit_scale is 0 (the logits' divisor)", m.where(), p);
  if (!m.get_bool(p + "rope.scaling.finetuned").value_or(true))
    fail("GGUF {}: {}rope.scaling.finetuned is false (a Granite without RoPE), which dpserve does not run",
         m.where(), p);
}

void read_granite(const GgufSet& g, const std::string& p, ModelConfig& c) {
  refuse_experts(g.metadata(), p);
  read_granite_scales(g.metadata(), p, c);
}

// Granite-MoE (llama.cpp's granitemoe): Granite's scales and Mixtral's experts and routing (its
// converter splits JetMoE's input_linear into ffn_gate_exps / ffn_up_exps), feed_forward_length wide.
// GraniteMoeShared's shared experts are refused by read_llama.
void read_granite_moe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  read_llama(g, p, c);
  read_granite_scales(g.metadata(), p, c);
}

// OLMo 2 (llama.cpp's olmo2): attn_q_norm / attn_k_norm over the whole projection, no attn_norm /
// ffn_norm, post_attention_norm and post_ffw_norm on the outputs; RoPE on halves (nothing permuted).
// OLMo 3 files add attention.sliding_window: then the layers attention.sliding_window_pattern marks (llama.cpp's
// converter writes one bool per layer from layer_types; a number is a period; absent, every fourth layer is full)
// attend over the window and rotate plainly with rope.freq_base_swa (default rope.freq_base): rope scaling is the
// full layers' only, as in llama.cpp's olmo2 graph. (llama.cpp 3f545bec itself ignores an array pattern and
// always takes every fourth layer full, which is what Olmo3Config's default layer_types say.)
void read_olmo2(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  refuse_experts(m, p);
  c.qk_norm_whole = c.post_norms_only = true;
  if (!read_window_layers(m, p, 4, c)) return;
  c.rope_local_theta = m.get_float(p + "rope.freq_base_swa").value_or(c.rope_theta);
  if (!(c.rope_local_theta > 0 && std::isfinite(c.rope_local_theta)))
    fail("GGUF {}: {}rope.freq_base_swa must be positive, got {}", m.where(), p, c.rope_local_theta);
}

// exaone4 (EXAONE 4.0): OLMo 2's post_attention_norm / post_ffw_norm with per-head attn_q_norm / attn_k_norm,
// RoPE on halves (nothing permuted). With attention.sliding_window, the layers attention.sliding_window_pattern
// marks (one bool per layer, as llama.cpp's converter writes layer_types or the config's pattern; a number is a
// period) attend over the window and rotate, the others attend fully unrotated, as the config says. (llama.cpp
// 3f545bec runs that only for 64-layer files, the 32B's shape; for other depths it ignores the window.)
void read_exaone4(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  refuse_experts(m, p);
  c.post_norms_only = true;
  if (!read_window_layers(m, p, 4, c)) return;
  if (const auto base = m.get_float(p + "rope.freq_base_swa"); base && *base != c.rope_theta)
    fail("GGUF {}: {}rope.freq_base_swa {} differs from rope.freq_base {}: EXAONE 4.0 rotates every sliding layer "
         "as configured once", m.where(), p, *base, c.rope_theta);
  c.layer_nope.assign(size_t(c.n_layers), 0);
  for (int64_t l = 0; l < c.n_layers; ++l) c.layer_nope[size_t(l)] = !c.layer_sliding[size_t(l)];
}

// mistral3 (llama.cpp's converter writes Mistral Small 3.x and Ministral 3 so): Llama's tensors with Q/K permuted;
// for Ministral 3 YaRN (rope.scaling.yarn_log_multiplier holding mscale_all_dim: gguf_config.cpp) and
// attention.temperature_scale, Llama 4's query temperature over periods of rope.scaling.original_context_length
// (ModelConfig::q_temp_beta), as llama.cpp's mistral3 graph applies them.
void read_mistral3(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  refuse_experts(m, p);
  const double beta = m.get_float(p + "attention.temperature_scale").value_or(0.0);
  if (!(beta >= 0 && std::isfinite(beta)))
    fail("GGUF {}: {}attention.temperature_scale must be >= 0, got {}", m.where(), p, beta);
  if (beta == 0) return;
  if (c.rope_scaling.type != RopeScaling::Type::Yarn || !m.has(p + "rope.scaling.original_context_length"))
    fail("GGUF {}: {}attention.temperature_scale needs YaRN's rope.scaling.original_context_length (its period)",
         m.where(), p);
  c.q_temp_beta = beta;
  c.q_temp_period = c.rope_scaling.original_max_position_embeddings;
}

// seed_oss (Seed-OSS-36B): Llama's tensors with q/k/v biases, RoPE on halves (nothing permuted), the MLP's input
// norm named post_attention_norm (gguf_loader.cpp). llama.cpp reads an attention.scale for it, which its
// converter never writes and Seed-OSS never had: refused rather than ignored.
void read_seed_oss(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  refuse_experts(m, p);
  if (m.has(p + "attention.scale"))
    fail("GGUF {}: {}attention.scale is set: Seed-OSS scales attention scores by 1/sqrt(head_dim) only", m.where(), p);
  (void)c;
}

// OLMoE (llama.cpp's olmoe): OLMo 2's whole-projection attn_q_norm / attn_k_norm with the usual
// attn_norm / ffn_norm, and in every layer feed_forward_length-wide experts whose top
// expert_used_count softmax weights are used as they are (llama.cpp does not renormalise them for
// olmoe, whatever the model's norm_topk_prob was); RoPE on halves (nothing permuted).
void read_olmoe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  read_all_sparse(g.metadata(), p, c, false, "OLMoE");
  c.qk_norm_whole = true;
}

// The nextn_predict_layers multi-token-prediction layers that glm4 / glm4moe / deepseek2 files count in
// block_count (at its end): never run by the model (NEXTN drafts with them: gguf_loader.cpp).
void read_nextn_layers(const GgufMetadata& m, const std::string& p, ModelConfig& c) {
  const int64_t nextn = m.get_int(p + "nextn_predict_layers").value_or(0);
  if (nextn < 0 || nextn >= c.n_layers)
    fail("GGUF {}: {}nextn_predict_layers {} must be in [0, block_count {})", m.where(), p, nextn, c.n_layers);
  c.n_layers -= nextn;
  c.nextn_layers = nextn;
}

// glm4 (GLM-4-0414, GLM-Z1): q/k/v biases, RoPE on adjacent pairs of the first rope.dimension_count
// dims of each head (llama.cpp's NORM rope type; nothing permuted), the MLP's gate and up fused in
// ffn_up (gate rows first, as phi3), and norms on the attention and MLP outputs (post_attention_norm,
// post_ffw_norm) beside ffn_norm before the MLP: Gemma's sandwich without the +1.
void read_glm4(const GgufSet& g, const std::string& p, ModelConfig& c) {
  refuse_experts(g.metadata(), p);
  read_nextn_layers(g.metadata(), p, c);
  c.sandwich_norms = true;
}

// glm4moe (GLM-4.5, 4.5-Air, 4.6): Llama-shaped attention with q/k/v biases (when the file has
// them) and per-head attn_q_norm / attn_k_norm when present (GLM-4.5 355B), RoPE on halves over the
// first rope.dimension_count dims of each head (nothing permuted), the MLP's input norm named
// post_attention_norm, DeepSeek-V3's routing keys (sigmoid unless expert_gating_func says otherwise)
// with leading_dense_block_count dense layers. The nextn_predict_layers multi-token-prediction layers
// that block_count includes at the end are not run by the model (NEXTN drafts with them).
void read_glm4moe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_nextn_layers(m, p, c);
  read_deepseek_moe_routing(g, p, c);
  if (c.n_experts == 0) fail("GGUF {}: {}expert_count is missing or 0, but glm4moe is a mixture of experts", m.where(), p);
  c.qk_norm = g.tensor("blk.0.attn_q_norm.weight") != nullptr;
}

// ernie4_5 (ERNIE-4.5-0.3B): Llama's tensors and keys, RoPE on adjacent pairs (llama.cpp's NORM rope
// type; its converter permutes nothing, the checkpoints already rotate pairs).
void read_ernie4_5(const GgufSet& g, const std::string& p, ModelConfig& c) { refuse_experts(g.metadata(), p); }

// ernie4_5-moe (ERNIE-4.5-21B-A3B, 300B-A47B): sparse the layers with a router (llama.cpp's keys
// leading_dense_block_count and interleave_moe_layer_step say the same of its files; dpserve reads the
// tensors, as for every such architecture: gguf_config.cpp), the others dense; softmax over the router
// logits, the top expert_used_count chosen with exp_probs_b added and renormalised (llama.cpp's
// build_moe_ffn for this architecture); expert_shared_feed_forward_length of shared experts (a multiple
// of the experts' width: dpserve runs that many of them as one MLP).
void read_ernie4_5_moe(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_expert_counts(m, p, c);
  c.moe_ffn = positive(m, p + "expert_feed_forward_length");
  c.decoder_sparse_step = 1;
  const int64_t shared = m.get_int(p + "expert_shared_feed_forward_length").value_or(0);
  if (shared < 0 || shared % c.moe_ffn != 0)
    fail("GGUF {}: {}expert_shared_feed_forward_length {} is not a multiple of the experts' width {}", m.where(), p,
         shared, c.moe_ffn);
  c.n_shared_experts = shared / c.moe_ffn;
  auto refuse = [&](const char* key, const std::string& why) {
    fail("GGUF {}: metadata key \"{}{}\" {}: ernie4_5-moe files route by softmax over all experts, the top "
         "expert_used_count chosen with exp_probs_b and renormalised, as llama.cpp does",
         m.where(), p, key, why);
  };
  refuse_other_routing(m, p, true, refuse);
  auto& r = c.routing;
  r.scoring = MoeRouting::Scoring::Softmax;
  r.topk = MoeRouting::TopK::NoauxTc;  // with no exp_probs_b: a zero bias (gguf_loader.cpp)
  r.normalize = true;
  r.scale_normalized = true;
}

// minimax-m2 (MiniMax-M2, M2.1, M2.5): attn_q_norm / attn_k_norm over the whole projection, RoPE on halves of the
// first rope.dimension_count dims of each head (nothing permuted), and in every layer experts
// expert_feed_forward_length wide chosen by sigmoid + exp_probs_b and weighted by their renormalised sigmoid
// scores: llama.cpp's build_moe_ffn for this architecture, which always renormalises and reads no groups or
// shared experts. A file asking for another rule is refused by name.
void read_minimax_m2(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_expert_counts(m, p, c);
  c.moe_ffn = positive(m, p + "expert_feed_forward_length");
  c.decoder_sparse_step = 1;
  auto refuse = [&](const char* key, const std::string& why) {
    fail("GGUF {}: metadata key \"{}{}\" {}: minimax-m2 files route by sigmoid scores, the top expert_used_count "
         "chosen with exp_probs_b and renormalised, as llama.cpp does",
         m.where(), p, key, why);
  };
  if (const auto f = m.get_int(p + "expert_gating_func"); !f || *f != 2)
    refuse("expert_gating_func", f ? fmt::format("is {}, not 2 (sigmoid)", *f) : std::string("is missing"));
  if (m.get_int(p + "expert_group_count").value_or(0) > 1) refuse("expert_group_count", "asks for expert groups");
  if (!m.get_bool(p + "expert_weights_norm").value_or(true)) refuse("expert_weights_norm", "is false");
  if (const auto s = m.get_float(p + "expert_weights_scale"); s && *s != 0.0 && *s != 1.0)
    refuse("expert_weights_scale", fmt::format("is {}", *s));
  for (const char* k : {"expert_shared_count", "expert_shared_feed_forward_length"})
    if (m.get_int(p + k).value_or(0) != 0) refuse(k, "asks for shared experts");
  auto& r = c.routing;
  r.scoring = MoeRouting::Scoring::Sigmoid;
  r.topk = MoeRouting::TopK::NoauxTc;  // exp_probs_b is required (gguf_loader.cpp)
  r.normalize = true;
  r.scale_normalized = true;
  c.qk_norm_whole = true;
}

// deepseek2 (DeepSeek-V2, V2-Lite, V3, R1, and GLM-4.7-Flash): llama.cpp's converter permutes nothing;
// its RoPE for this architecture rotates adjacent pairs of q_pe / k_pe, as dpserve's MLA does for every
// model. Its converter drops DeepSeek's multi-token-prediction layer but keeps GLM-4.7-Flash's
// (nextn_predict_layers of them at the end of block_count): kept for NEXTN, never run by the model.
// llama4 (Llama 4 Scout and Maverick, as llama.cpp's converter writes them): Llama's tensors, nothing permuted (the
// checkpoints rotate adjacent pairs), every interleave_moe_layer_step-th layer sparse with experts
// expert_feed_forward_length wide (top expert_used_count of the router logits, weighted by their sigmoids, each
// weight multiplying its expert's input) plus a shared expert as wide, the others dense (feed_forward_length).
// llama.cpp's llama4 graph fixes what the file does not say: every fourth layer NoPE with the query temperature
// 1 + 0.1 ln(1 + floor((p + 1) / 8192)), the others chunked in 8192 positions and, unless there are 128 experts
// (Maverick has use_qk_norm false), their q and k L2-normalised after RoPE. Keys that would change those (a
// sliding window of another size, another pattern or RoPE base) are refused.
void read_llama4(const GgufSet& g, const std::string& p, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  read_expert_counts(m, p, c);
  c.moe_ffn = positive(m, p + "expert_feed_forward_length");
  const int64_t step = positive(m, p + "interleave_moe_layer_step");
  for (int64_t l = 0; l < c.n_layers; ++l)
    if ((g.tensor("blk." + std::to_string(l) + ".ffn_gate_inp.weight") != nullptr) != ((l + 1) % step == 0))
      fail("GGUF {}: layer {} {} a router (ffn_gate_inp), but {}interleave_moe_layer_step {} makes it {}", m.where(), l,
           (l + 1) % step == 0 ? "lacks" : "has", p, step, (l + 1) % step == 0 ? "sparse" : "dense");
  c.routing.scoring = MoeRouting::Scoring::Sigmoid;
  c.n_shared_experts = 1;
  c.moe_weight_input = true;
  constexpr int64_t kChunk = 8192, kPeriod = 4;
  if (const auto w = m.get_int(p + "attention.sliding_window"); w && *w != kChunk)
    fail("GGUF {}: {}attention.sliding_window is {}: llama.cpp's llama4 attends in chunks of {} (or, with 0, runs "
         "another model), which is all dpserve reads",
         m.where(), p, *w, kChunk);
  if (const GgufValue* v = m.find(p + "attention.sliding_window_pattern");
      v && (v->type == GgufType::Array || m.get_int(p + "attention.sliding_window_pattern") != kPeriod))
    fail("GGUF {}: {}attention.sliding_window_pattern must be {} (every fourth layer NoPE and unchunked)", m.where(),
         p, kPeriod);
  if (const auto b = m.get_float(p + "rope.freq_base_swa"); b && *b != c.rope_theta)
    fail("GGUF {}: {}rope.freq_base_swa differs from rope.freq_base: Llama 4 has one RoPE", m.where(), p);
  if (m.has(p + "attention.scale"))
    fail("GGUF {}: {}attention.scale is set: Llama 4 scales attention scores by 1/sqrt(head_dim) only", m.where(), p);
  c.layer_nope.assign(size_t(c.n_layers), 0);
  c.layer_sliding.assign(size_t(c.n_layers), 0);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    c.layer_nope[size_t(l)] = (l + 1) % kPeriod == 0;
    c.layer_sliding[size_t(l)] = !c.layer_nope[size_t(l)];
  }
  c.sliding_window = kChunk;
  c.attn_chunked = true;
  c.q_temp_beta = 0.1;
  c.q_temp_period = 8192;
  c.q_temp_offset = 1;
  c.q_temp_nope_only = true;
  c.qk_l2_norm = c.n_experts != 128;
}

void read_deepseek2_file(const GgufSet& g, const std::string& p, ModelConfig& c) {
  read_nextn_layers(g.metadata(), p, c);
  read_deepseek2(g, p, c);
}

constexpr std::array<GgufArch, 24> kArchs = {{
    {"llama", Arch::Llama, true, false, false, false, false, read_llama},
    {"qwen2", Arch::Qwen2, false, true, false, false, false, nullptr},
    {"qwen2moe", Arch::Qwen2, false, true, false, true, false, read_qwen2moe},
    {"qwen3", Arch::Qwen3, false, false, true, false, false, nullptr},
    {"qwen3moe", Arch::Qwen3Moe, false, false, true, true, false, read_qwen3moe},
    {"deepseek2", Arch::DeepseekV2, false, false, false, true, true, read_deepseek2_file},
    {"gemma2", Arch::Gemma2, false, false, false, false, false, read_gemma2},
    {"gemma3", Arch::Gemma3, false, false, true, false, false, read_gemma3},
    {"phi3", Arch::Phi3, false, false, false, false, false, read_phi3},
    {"gpt-oss", Arch::GptOss, false, true, false, true, false, read_gpt_oss},
    {"smollm3", Arch::Llama, true, false, false, false, false, read_smollm3},
    {"granite", Arch::Llama, true, false, false, false, false, read_granite},
    {"granitemoe", Arch::Llama, true, false, false, false, false, read_granite_moe},
    {"olmo2", Arch::Llama, false, false, false, false, false, read_olmo2},
    {"olmoe", Arch::Llama, false, false, false, false, false, read_olmoe},
    {"exaone4", Arch::Llama, false, false, true, false, false, read_exaone4},
    {"seed_oss", Arch::Llama, false, false, false, false, false, read_seed_oss},
    {"mistral3", Arch::Llama, true, false, false, false, false, read_mistral3},
    {"glm4", Arch::Llama, true, false, false, false, false, read_glm4},
    {"glm4moe", Arch::Llama, false, false, false, true, false, read_glm4moe},
    {"ernie4_5", Arch::Llama, true, false, false, false, false, read_ernie4_5},
    {"ernie4_5-moe", Arch::Llama, true, false, false, true, false, read_ernie4_5_moe},
    {"minimax-m2", Arch::Llama, false, false, false, true, false, read_minimax_m2},
    {"llama4", Arch::Llama, true, false, false, true, false, read_llama4},
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
