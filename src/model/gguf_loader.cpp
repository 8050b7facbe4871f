#include "model/gguf_loader.h"

#include <array>
#include <charconv>
#include <set>

#include <fmt/ranges.h>

#include "core/check.h"
#include "model/gguf_config.h"
#include "model/gguf_set.h"
#include "model/gguf_types.h"

namespace dpserve {

namespace {

// When a per-layer tensor belongs in a layer.
enum class Use { Always, QkvBias, QkNorm, Dense, Router, Experts };

struct LayerName {
  std::string_view gguf;  // after "blk.N."
  std::string_view hf;    // after "model.layers.N." (experts: after "mlp.experts.E.")
  Use use;
};

// llama.cpp's tensor names (llama-arch.cpp) onto the names src/model loads.
constexpr std::array<LayerName, 18> kLayerNames = {{
    {"attn_norm.weight", "input_layernorm.weight", Use::Always},
    {"attn_q.weight", "self_attn.q_proj.weight", Use::Always},
    {"attn_k.weight", "self_attn.k_proj.weight", Use::Always},
    {"attn_v.weight", "self_attn.v_proj.weight", Use::Always},
    {"attn_output.weight", "self_attn.o_proj.weight", Use::Always},
    {"attn_q.bias", "self_attn.q_proj.bias", Use::QkvBias},
    {"attn_k.bias", "self_attn.k_proj.bias", Use::QkvBias},
    {"attn_v.bias", "self_attn.v_proj.bias", Use::QkvBias},
    {"attn_q_norm.weight", "self_attn.q_norm.weight", Use::QkNorm},
    {"attn_k_norm.weight", "self_attn.k_norm.weight", Use::QkNorm},
    {"ffn_norm.weight", "post_attention_layernorm.weight", Use::Always},
    {"ffn_gate.weight", "mlp.gate_proj.weight", Use::Dense},
    {"ffn_up.weight", "mlp.up_proj.weight", Use::Dense},
    {"ffn_down.weight", "mlp.down_proj.weight", Use::Dense},
    {"ffn_gate_inp.weight", "mlp.gate.weight", Use::Router},
    {"ffn_gate_exps.weight", "gate_proj.weight", Use::Experts},
    {"ffn_up_exps.weight", "up_proj.weight", Use::Experts},
    {"ffn_down_exps.weight", "down_proj.weight", Use::Experts},
}};

struct GlobalName {
  std::string_view gguf, hf;
  bool required;
};
constexpr std::array<GlobalName, 3> kGlobalNames = {{
    {"token_embd.weight", "model.embed_tokens.weight", true},
    {"output_norm.weight", "model.norm.weight", true},
    {"output.weight", "lm_head.weight", false},  // absent: tied to token_embd
}};

bool applies(Use u, const ModelConfig& c, int64_t layer) {
  switch (u) {
    case Use::Always: return true;
    case Use::QkvBias: return c.qkv_bias;
    case Use::QkNorm: return c.qk_norm;
    case Use::Dense: return !c.layer_is_moe(layer);
    case Use::Router:
    case Use::Experts: return c.layer_is_moe(layer);
  }
  return false;
}

const char* why_not(Use u) {
  switch (u) {
    case Use::QkvBias: return "this architecture has no Q/K/V biases";
    case Use::QkNorm: return "this architecture has no per-head Q/K norm";
    case Use::Dense: return "the layer is a mixture of experts";
    case Use::Router:
    case Use::Experts: return "the layer is dense";
    default: return "";
  }
}

// "blk.12.attn_q.weight" -> (12, "attn_q.weight"); false for other names.
bool split_layer_name(std::string_view name, int64_t& layer, std::string_view& rest) {
  if (name.substr(0, 4) != "blk.") return false;
  name.remove_prefix(4);
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  const auto r = std::from_chars(name.data(), name.data() + dot, layer);
  if (r.ec != std::errc() || r.ptr != name.data() + dot) return false;
  rest = name.substr(dot + 1);
  return true;
}

DType tensor_dtype(const GgufTensorInfo& t) {
  const auto d = ggml_type_to_dtype(t.type);
  if (!d)
    fail("GGUF {}: tensor \"{}\" has type {}, which dpserve cannot compute with (supported: F32, F16, BF16, Q8_0, "
         "Q4_0, Q4_K, Q5_K, Q6_K; Q4_K_M and Q5_K_M files use only these)",
         t.file, t.name, ggml_type_name(t.type));
  return *d;
}

// GGUF lists dimensions fastest first; the store (like safetensors) slowest first.
std::vector<int64_t> hf_shape(const GgufTensorInfo& t) { return std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()); }

// blk.N.ffn_*_exps [experts, rows, cols] -> model.layers.N.mlp.experts.E.* [rows, cols], views in place.
void add_experts(const GgufTensorInfo& t, DType dt, int64_t n_experts, const std::string& prefix, std::string_view hf,
                 WeightStore& store) {
  if (t.ne.size() != 3 || t.ne[2] != n_experts)
    fail("GGUF {}: tensor \"{}\" must be 3-D [{} experts, rows, cols] (expert_count), has dimensions {}", t.file,
         t.name, n_experts, fmt::join(t.ne, " x "));
  const int64_t cols = t.ne[0], rows = t.ne[1], experts = t.ne[2];
  const int64_t bytes = dtype_row_bytes(dt, cols) * rows;
  for (int64_t e = 0; e < experts; ++e)
    store.add(prefix + "mlp.experts." + std::to_string(e) + "." + std::string(hf),
              TensorInfo{dt, {rows, cols}, static_cast<const uint8_t*>(t.data) + e * bytes, t.file});
}

}  // namespace

void load_gguf(const std::string& path, ModelConfig& config, WeightStore& store) {
  const GgufSet g(path);
  config = gguf_model_config(g);
  const ModelConfig& c = config;
  std::set<std::string> seen;
  for (const GgufTensorInfo* tp : g.tensors()) {
    const GgufTensorInfo& t = *tp;
    if (t.name == "rope_freqs.weight") continue;  // read into the config
    int64_t layer = -1;
    std::string_view rest;
    if (split_layer_name(t.name, layer, rest)) {
      if (layer >= c.n_layers)
        fail("GGUF {}: tensor \"{}\" belongs to layer {}, but the model has {} layers (block_count)", t.file, t.name,
             layer, c.n_layers);
      const LayerName* rule = nullptr;
      for (const LayerName& n : kLayerNames)
        if (n.gguf == rest) rule = &n;
      if (!rule) fail("GGUF {}: tensor \"{}\" is not one dpserve uses for a {} model", t.file, t.name, c.arch_name);
      if (!applies(rule->use, c, layer))
        fail("GGUF {}: tensor \"{}\" is not used by this {} model ({})", t.file, t.name, c.arch_name,
             why_not(rule->use));
      const DType dt = tensor_dtype(t);
      const std::string prefix = "model.layers." + std::to_string(layer) + ".";
      if (rule->use == Use::Experts) {
        add_experts(t, dt, c.n_experts, prefix, rule->hf, store);
      } else {
        store.add(prefix + std::string(rule->hf), TensorInfo{dt, hf_shape(t), t.data, t.file});
      }
      seen.insert(t.name);
      continue;
    }
    const GlobalName* rule = nullptr;
    for (const GlobalName& n : kGlobalNames)
      if (n.gguf == t.name) rule = &n;
    if (!rule) fail("GGUF {}: tensor \"{}\" is not one dpserve uses for a {} model", t.file, t.name, c.arch_name);
    store.add(std::string(rule->hf), TensorInfo{tensor_dtype(t), hf_shape(t), t.data, t.file});
    seen.insert(t.name);
  }
  // Missing tensors are named as the file would name them.
  for (const GlobalName& n : kGlobalNames)
    if (n.required && !seen.count(std::string(n.gguf)))
      fail("GGUF {}: tensor \"{}\" is missing", g.path(), n.gguf);
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LayerName& n : kLayerNames) {
      const std::string name = "blk." + std::to_string(l) + "." + std::string(n.gguf);
      if (applies(n.use, c, l) && !seen.count(name))
        fail("GGUF {}: tensor \"{}\" is missing (a {} model needs it)", g.path(), name, c.arch_name);
    }
  for (const auto& f : g.files()) store.add_file(f->mapping());
}

}  // namespace dpserve
