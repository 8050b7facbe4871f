#include "model/gguf_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "core/check.h"
#include "model/gguf_end_of_generation.h"
#include "model/gguf_q5_to_q8.h"
#include "model/gguf_types.h"

namespace dpserve {

namespace {

// Upper bounds that keep a hostile file from sizing tables by absurd values before the tensor
// shapes (checked when the layers load) would catch them.
constexpr int64_t kMaxLayers = 4096;

class Keys {
 public:
  Keys(const GgufMetadata& m, std::string arch) : m_(m), p_(std::move(arch) + ".") {}

  std::string key(const char* k) const { return p_ + k; }

  int64_t required(const char* k, int64_t max) const {
    const auto v = m_.get_int(key(k));
    if (!v) fail("GGUF {}: metadata key \"{}\" is missing", m_.where(), key(k));
    return check(k, *v, max);
  }
  std::optional<int64_t> optional(const char* k, int64_t max) const {
    const auto v = m_.get_int(key(k));
    if (!v) return std::nullopt;
    return check(k, *v, max);
  }
  // A per-layer count stored as one integer or an array of `layers` equal integers.
  std::optional<int64_t> per_layer(const char* k, int64_t layers, int64_t max) const {
    const GgufValue* v = m_.find(key(k));
    if (!v || v->type != GgufType::Array) return optional(k, max);
    if (int64_t(v->count) != layers || v->elem == GgufType::String || v->elem == GgufType::F32 ||
        v->elem == GgufType::F64)
      fail("GGUF {}: metadata key \"{}\" must be an integer or an array of {} integers", m_.where(), key(k), layers);
    for (uint64_t i = 1; i < v->count; ++i)
      if (v->int_at(i) != v->int_at(0))
        fail("GGUF {}: metadata key \"{}\" differs between layers, which dpserve does not support", m_.where(),
             key(k));
    return check(k, v->int_at(0), max);
  }
  std::optional<double> number(const char* k) const { return m_.get_float(key(k)); }

 private:
  int64_t check(const char* k, int64_t v, int64_t max) const {
    if (v <= 0 || v > max) fail("GGUF {}: metadata key \"{}\" is {}, out of range (1 to {})", m_.where(), key(k), v, max);
    return v;
  }
  const GgufMetadata& m_;
  std::string p_;
};

std::string layer_tensor(int64_t l, const char* what) { return "blk." + std::to_string(l) + "." + what; }

// YaRN of a per-head attention model (Qwen2 / Qwen3 / Llama as llama.cpp's converter writes it from
// Hugging Face's rope_scaling): factor, original_context_length (default: the context length), and
// the HF fields it copies when the config had them: yarn_beta_fast / yarn_beta_slow and
// yarn_attn_factor (HF's attention_factor). This llama.cpp release reads neither of those three for
// these architectures (its defaults are HF's: 32, 1, 0.1 ln(factor) + 1); dpserve follows the model's
// config they came from. Keys that have no Hugging Face meaning are refused unless neutral.
void read_per_head_yarn(const Keys& k, const GgufMetadata& m, double factor, ModelConfig& c) {
  auto& r = c.rope_scaling;
  r.type = RopeScaling::Type::Yarn;
  if (!(factor >= 1.0)) fail("GGUF {}: YaRN needs {} >= 1, got {}", m.where(), k.key("rope.scaling.factor"), factor);
  r.factor = factor;
  r.original_max_position_embeddings =
      k.number("rope.scaling.original_context_length").value_or(double(c.max_pos));
  if (!(r.original_max_position_embeddings >= 1 && std::isfinite(r.original_max_position_embeddings)))
    fail("GGUF {}: {} must be positive, got {}", m.where(), k.key("rope.scaling.original_context_length"),
         r.original_max_position_embeddings);
  r.beta_fast = k.number("rope.scaling.yarn_beta_fast").value_or(32.0);
  r.beta_slow = k.number("rope.scaling.yarn_beta_slow").value_or(1.0);
  if (!(r.beta_slow > 0 && r.beta_fast > r.beta_slow && std::isfinite(r.beta_fast)))
    fail("GGUF {}: YaRN needs 0 < {} < {}, got {} and {}", m.where(), k.key("rope.scaling.yarn_beta_slow"),
         k.key("rope.scaling.yarn_beta_fast"), r.beta_slow, r.beta_fast);
  r.mscale = 1.0;
  r.mscale_all_dim = 0.0;
  r.attention_factor = k.number("rope.scaling.yarn_attn_factor").value_or(0.0);
  if (r.attention_factor < 0 || !std::isfinite(r.attention_factor))
    fail("GGUF {}: {} must be positive, got {}", m.where(), k.key("rope.scaling.yarn_attn_factor"),
         r.attention_factor);
  for (const char* neutral_one : {"rope.scaling.yarn_ext_factor", "rope.scaling.attn_factor"})
    if (const auto v = k.number(neutral_one); v && *v != 1.0)
      fail("GGUF {}: {} is {}: only 1 (no change) is supported with YaRN for {}", m.where(), k.key(neutral_one), *v,
           c.arch_name);
  if (const auto log_mul = k.number("rope.scaling.yarn_log_multiplier"); log_mul && c.arch_name == "mistral3") {
    // llama.cpp's mistral3 (Ministral 3) stores mscale_all_dim here and takes mscale as 1: the cos / sin factor
    // is mscale(factor, 1) / mscale(factor, mscale_all_dim), 1 for the released mscale = mscale_all_dim = 1.
    r.mscale_all_dim = *log_mul;
    if (!(r.mscale_all_dim > 0 && std::isfinite(r.mscale_all_dim)))
      fail("GGUF {}: {} must be positive, got {}", m.where(), k.key("rope.scaling.yarn_log_multiplier"), *log_mul);
  } else if (log_mul) {
    fail("GGUF {}: {} is deepseek2's YaRN key; {} has no such field", m.where(), k.key("rope.scaling.yarn_log_multiplier"),
         c.arch_name);
  }
}

void read_rope(const GgufSet& g, const Keys& k, ModelConfig& c) {
  const GgufMetadata& m = g.metadata();
  c.rope_theta = k.number("rope.freq_base").value_or(10000.0);
  if (!(c.rope_theta > 0 && std::isfinite(c.rope_theta)))
    fail("GGUF {}: {} must be positive, got {}", m.where(), k.key("rope.freq_base"), c.rope_theta);
  // MLA rotates only the qk_rope_head_dim part (its reader took the width from this key); phi3 and
  // glm4 / glm4moe / minimax-m2 the first rope.dimension_count of each head (Phi-4-mini's, GLM-4's, MiniMax-M2's
  // partial rotary).
  if (const auto d = k.optional("rope.dimension_count", kGgufMaxWidth); d && *d != c.rope_dim()) {
    if (c.arch != Arch::Phi3 && c.arch_name != "glm4moe" && c.arch_name != "glm4" && c.arch_name != "minimax-m2")
      fail("GGUF {}: {} is {} but heads are {} wide: partial RoPE is not supported for {}", m.where(),
           k.key("rope.dimension_count"), *d, c.rope_dim(), c.arch_name);
    if (*d > c.head_dim || *d < 2 || *d % 2 != 0)
      fail("GGUF {}: {} is {}: RoPE rotates an even number of dimensions, at most the head's {}", m.where(),
           k.key("rope.dimension_count"), *d, c.head_dim);
    c.rotary_dim = *d;
  }
  const int64_t width = c.rope_dim();
  // As llama.cpp: a factor without a type means linear scaling; the old key is rope.scale_linear.
  std::string type = m.get_string(k.key("rope.scaling.type")).value_or("linear");
  double factor = k.number("rope.scaling.factor").value_or(k.number("rope.scale_linear").value_or(0.0));
  if (!std::isfinite(factor) || factor < 0)
    fail("GGUF {}: {} is {}, out of range", m.where(), k.key("rope.scaling.factor"), factor);
  if (type == "linear") {
    if (factor != 0.0 && factor != 1.0) {
      c.rope_scaling.type = RopeScaling::Type::Linear;
      c.rope_scaling.factor = factor;
    }
  } else if (type == "yarn" && c.rope_scaling.type == RopeScaling::Type::Yarn) {
    // read with the architecture's keys (deepseek2's YaRN)
  } else if (type == "yarn" && !c.mla.enabled()) {
    read_per_head_yarn(k, m, factor, c);
  } else if (type != "none") {
    fail("GGUF {}: {} \"{}\" is not supported for {} (supported: none, linear, yarn, and llama3-style factors "
         "in rope_freqs.weight)",
         m.where(), k.key("rope.scaling.type"), type, c.arch_name);
  }
  // llama3-style scaling: llama.cpp's converter stores one divisor per frequency.
  if (const GgufTensorInfo* t = g.tensor("rope_freqs.weight")) {
    if (t->type != 0 || t->ne.size() != 1 || t->ne[0] != width / 2)
      fail("GGUF {}: rope_freqs.weight must be F32 of {} elements (the rotated width / 2), is {} of {}", t->file,
           width / 2, ggml_type_name(t->type), t->numel());
    c.rope_scaling.freq_factors.resize(size_t(width / 2));
    std::memcpy(c.rope_scaling.freq_factors.data(), t->data, sizeof(float) * size_t(width / 2));
    for (float f : c.rope_scaling.freq_factors)
      if (!(f > 0 && std::isfinite(f))) fail("GGUF {}: rope_freqs.weight holds {}, factors must be positive", t->file, f);
  }
}

void read_special_ids(const GgufMetadata& m, ModelConfig& c) {
  if (const auto b = m.get_int("tokenizer.ggml.bos_token_id"); b && *b >= 0 && *b < c.vocab) c.bos_id = int32_t(*b);
  for (int32_t e : gguf_end_of_generation_ids(m))
    if (e < c.vocab && std::find(c.eos_ids.begin(), c.eos_ids.end(), e) == c.eos_ids.end()) c.eos_ids.push_back(e);
}

// The element type of most matrix elements (what a "Q4_K_M" file mostly is).
DType dominant_dtype(const GgufSet& g) {
  std::map<DType, int64_t> elems;
  for (const GgufTensorInfo* t : g.tensors())
    if (t->ne.size() >= 2)
      // Q5_0 / Q5_1 load as Q8_0, MXFP4 as Q8_0 (bf16 only for scales beyond an f16)
      if (auto d = t->type == kGgmlQ5_0 || t->type == kGgmlQ5_1 || t->type == kGgmlMxfp4 ? DType::Q8_0
                                                                                      : ggml_type_to_dtype(t->type))
        elems[*d] += t->numel();
  DType best = DType::F32;
  int64_t most = -1;
  for (auto [d, n] : elems)
    if (n > most) best = d, most = n;
  return best;
}

}  // namespace

const GgufArch& gguf_model_arch(const GgufSet& g) {
  const GgufMetadata& m = g.metadata();
  const auto name = m.get_string("general.architecture");
  if (!name) fail("GGUF {}: metadata key \"general.architecture\" is missing", m.where());
  const GgufArch* a = find_gguf_arch(*name);
  if (!a)
    fail("GGUF {}: architecture \"{}\" is not one dpserve runs (supported: {})", m.where(), *name,
         gguf_arch_names());
  return *a;
}

ModelConfig gguf_model_config(const GgufSet& g) {
  const GgufMetadata& m = g.metadata();
  const GgufArch& a = gguf_model_arch(g);
  const Keys k(m, std::string(a.name));
  ModelConfig c;
  c.arch = a.arch;
  c.arch_name = std::string(a.name);
  c.n_layers = k.required("block_count", kMaxLayers);
  c.hidden = k.required("embedding_length", kGgufMaxWidth);
  c.max_pos = k.required("context_length", kMaxPositions);
  const auto heads = k.per_layer("attention.head_count", c.n_layers, kGgufMaxWidth);
  if (!heads) fail("GGUF {}: metadata key \"{}\" is missing", m.where(), k.key("attention.head_count"));
  c.n_heads = *heads;
  if (a.mla) {
    a.read_extra(g, std::string(a.name) + ".", c);  // head widths, cache layout, experts, YaRN
  } else {
    c.n_kv_heads = k.per_layer("attention.head_count_kv", c.n_layers, kGgufMaxWidth).value_or(c.n_heads);
    if (const auto kl = k.optional("attention.key_length", kGgufMaxWidth)) {
      c.head_dim = *kl;
    } else {
      if (c.hidden % c.n_heads != 0)
        fail("GGUF {}: embedding_length {} is not divisible by head_count {}", m.where(), c.hidden, c.n_heads);
      c.head_dim = c.hidden / c.n_heads;
    }
  }
  if (const auto vl = k.optional("attention.value_length", kGgufMaxWidth); !a.mla && vl && *vl != c.head_dim)
    fail("GGUF {}: attention.value_length {} differs from key_length {}, which dpserve does not support", m.where(),
         *vl, c.head_dim);
  if (c.n_heads % c.n_kv_heads != 0)
    fail("GGUF {}: head_count {} is not a multiple of head_count_kv {}", m.where(), c.n_heads, c.n_kv_heads);
  if (c.head_dim % 2 != 0) fail("GGUF {}: heads of {} elements: RoPE needs an even width", m.where(), c.head_dim);
  const auto eps = k.number("attention.layer_norm_rms_epsilon");
  if (!eps) fail("GGUF {}: metadata key \"{}\" is missing", m.where(), k.key("attention.layer_norm_rms_epsilon"));
  c.rms_eps = *eps;
  if (!(c.rms_eps > 0 && std::isfinite(c.rms_eps)))
    fail("GGUF {}: {} must be positive, got {}", m.where(), k.key("attention.layer_norm_rms_epsilon"), c.rms_eps);
  if (a.moe) {
    c.ffn = k.optional("feed_forward_length", kGgufMaxWidth * 16).value_or(0);
  } else {
    c.ffn = k.required("feed_forward_length", kGgufMaxWidth * 16);
  }
  c.rope_interleaved = a.rope_interleaved;
  c.qkv_bias = a.qkv_bias || (a.arch == Arch::Llama && g.tensor("blk.0.attn_q.bias"));
  c.qk_norm = a.qk_norm;
  read_rope(g, k, c);
  if (a.read_extra && !a.mla) a.read_extra(g, std::string(a.name) + ".", c);

  const GgufTensorInfo* emb = g.tensor("token_embd.weight");
  if (!emb || emb->ne.size() != 2)
    fail("GGUF {}: tensor \"token_embd.weight\" is missing or not 2-D", m.where());
  c.vocab = emb->ne[1];
  if (const auto v = k.optional("vocab_size", int64_t(1) << 32); v && *v != c.vocab)
    fail("GGUF {}: {} is {} but token_embd.weight has {} rows", m.where(), k.key("vocab_size"), *v, c.vocab);
  c.tie_embeddings = g.tensor("output.weight") == nullptr;
  if (a.moe && !c.is_deepseek())  // deepseek2 names its dense layers: leading_dense_block_count
    for (int64_t l = 0; l < c.n_layers; ++l)
      if (!g.tensor(layer_tensor(l, "ffn_gate_inp.weight"))) c.mlp_only_layers.push_back(l);
  for (int64_t l = 0; l < c.n_layers && c.ffn <= 0; ++l)
    if (c.is_deepseek() && !c.layer_is_moe(l))
      fail("GGUF {}: layer {} is dense but {} is missing for its MLP", m.where(), l, k.key("feed_forward_length"));
  if (!c.mlp_only_layers.empty() && c.ffn <= 0)
    fail("GGUF {}: layer {} has no router (ffn_gate_inp) and {} is missing for its dense MLP", m.where(),
         c.mlp_only_layers[0], k.key("feed_forward_length"));
  read_special_ids(m, c);
  c.dtype = dominant_dtype(g);
  return c;
}

}  // namespace dpserve
