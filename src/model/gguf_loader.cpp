#include "model/gguf_loader.h"

#include <array>
#include <charconv>
#include <cstring>
#include <deque>
#include <map>
#include <set>

#include <fmt/ranges.h>

#include "core/check.h"
#include "kernels/dequant.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"
#include "model/gguf_deepseek2.h"
#include "model/gguf_q5_to_q8.h"
#include "model/gguf_config.h"
#include "model/gguf_set.h"
#include "model/gguf_types.h"
#include "model/mxfp4.h"

namespace dpserve {

namespace {

// When a per-layer tensor belongs in a layer.
enum class Use {
  Always, QkvBias, QkNorm, Dense, Router, Experts,
  InputNorm,   // attn_norm: every architecture but olmo2 (no norm before attention)
  Kv,          // attn_k / attn_v: every architecture but deepseek2 (MLA)
  Q,           // attn_q: all but MLA with a q LoRA
  QLora,       // deepseek2 with attention.q_lora_rank > 0
  Mla,         // deepseek2: the latent's down-projection and norm
  KvB,         // deepseek2, older files: kv_b_proj as it is
  KvBSplit,    // deepseek2, llama.cpp's converter since its absorbed MLA: attn_k_b / attn_v_b
  RouterBias,  // deepseek2's exp_probs_b (optional: noaux_tc selection)
  Shared,      // deepseek2's shared experts, qwen2moe's shared expert
  SharedGate,  // qwen2moe: the shared expert's sigmoid gate, ffn_gate_inp_shexp [hidden]
  Sandwich,    // gemma3's norms on the attention and MLP outputs
  Qkv,         // phi3: q, k and v in one attn_qkv (instead of attn_q / attn_k / attn_v)
  Gate,        // ffn_gate of a dense layer (phi3 has none: its ffn_up holds gate and up)
  FfnNorm,     // the MLP's input norm as ffn_norm (gpt-oss names it post_attention_norm)
  PostNorm,    // post_attention_norm: gemma's sandwich norm, gpt-oss's MLP input norm
  OBias,       // gpt-oss: attn_output.bias
  Sinks,       // gpt-oss: attn_sinks, one logit per query head
  MoeBias,     // gpt-oss: the router's bias
  ExpertBias,  // gpt-oss: ffn_*_exps.bias [experts, width], split per expert
};

struct LayerName {
  std::string_view gguf;  // after "blk.N."
  std::string_view hf;    // after "model.layers.N." (experts: after "mlp.experts.E.")
  Use use;
};

// llama.cpp's tensor names (llama-arch.cpp) onto the names src/model loads.
constexpr std::array<LayerName, 40> kLayerNames = {{
    {"attn_norm.weight", "input_layernorm.weight", Use::InputNorm},
    {"attn_q.weight", "self_attn.q_proj.weight", Use::Q},
    {"attn_k.weight", "self_attn.k_proj.weight", Use::Kv},
    {"attn_v.weight", "self_attn.v_proj.weight", Use::Kv},
    {"attn_output.weight", "self_attn.o_proj.weight", Use::Always},
    {"attn_q.bias", "self_attn.q_proj.bias", Use::QkvBias},
    {"attn_k.bias", "self_attn.k_proj.bias", Use::QkvBias},
    {"attn_v.bias", "self_attn.v_proj.bias", Use::QkvBias},
    {"attn_q_norm.weight", "self_attn.q_norm.weight", Use::QkNorm},
    {"attn_k_norm.weight", "self_attn.k_norm.weight", Use::QkNorm},
    {"attn_q_a.weight", "self_attn.q_a_proj.weight", Use::QLora},
    {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight", Use::QLora},
    {"attn_q_b.weight", "self_attn.q_b_proj.weight", Use::QLora},
    {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight", Use::Mla},
    {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight", Use::Mla},
    {"attn_kv_b.weight", "self_attn.kv_b_proj.weight", Use::KvB},
    {"attn_k_b.weight", "", Use::KvBSplit},  // rebuilt into kv_b_proj (see add_kv_b)
    {"attn_v_b.weight", "", Use::KvBSplit},
    {"ffn_norm.weight", "post_attention_layernorm.weight", Use::FfnNorm},  // gemma3: pre_feedforward_layernorm
    {"post_attention_norm.weight", "post_attention_layernorm.weight", Use::PostNorm},
    {"post_ffw_norm.weight", "post_feedforward_layernorm.weight", Use::Sandwich},
    {"attn_qkv.weight", "self_attn.qkv_proj.weight", Use::Qkv},
    {"ffn_gate.weight", "mlp.gate_proj.weight", Use::Gate},
    {"ffn_up.weight", "mlp.up_proj.weight", Use::Dense},  // phi3: mlp.gate_up_proj, gate rows then up
    {"ffn_down.weight", "mlp.down_proj.weight", Use::Dense},
    {"ffn_gate_inp.weight", "mlp.gate.weight", Use::Router},
    {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias", Use::RouterBias},
    {"ffn_gate_exps.weight", "gate_proj.weight", Use::Experts},
    {"ffn_up_exps.weight", "up_proj.weight", Use::Experts},
    {"ffn_down_exps.weight", "down_proj.weight", Use::Experts},
    {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight", Use::Shared},
    {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight", Use::Shared},
    {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight", Use::Shared},  // qwen2moe: mlp.shared_expert.
    {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight", Use::SharedGate},
    {"attn_output.bias", "self_attn.o_proj.bias", Use::OBias},
    {"attn_sinks.weight", "self_attn.sinks", Use::Sinks},
    {"ffn_gate_inp.bias", "mlp.router.bias", Use::MoeBias},
    {"ffn_gate_exps.bias", "gate_proj.bias", Use::ExpertBias},
    {"ffn_up_exps.bias", "up_proj.bias", Use::ExpertBias},
    {"ffn_down_exps.bias", "down_proj.bias", Use::ExpertBias},
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

// What decides which tensors a layer has, beyond the config.
struct Layout {
  const ModelConfig& c;
  bool split_kv_b = false;  // deepseek2: attn_k_b / attn_v_b instead of attn_kv_b
  bool fused_qkv = false;   // phi3 written with attn_qkv (llama.cpp also reads it split)
};

// phi3 and glm4 keep the MLP's gate rows in ffn_up, before its up rows (Hugging Face's gate_up_proj).
bool gate_up_fused(const ModelConfig& c) { return c.arch == Arch::Phi3 || c.arch_name == "glm4"; }

// gpt-oss, glm4moe and seed_oss name the MLP's input norm post_attention_norm (Hugging Face's
// post_attention_layernorm), where the others say ffn_norm.
bool mlp_norm_is_post_attention(const ModelConfig& c) {
  return c.arch == Arch::GptOss || c.arch_name == "glm4moe" || c.arch_name == "seed_oss";
}

bool applies(Use u, const Layout& lay, int64_t layer) {
  const ModelConfig& c = lay.c;
  const bool mla = c.mla.enabled();
  switch (u) {
    case Use::Always: return true;
    case Use::QkvBias: return c.qkv_bias;
    case Use::QkNorm: return c.qk_norm || c.qk_norm_whole;
    case Use::InputNorm: return !c.post_norms_only;
    case Use::Dense: return !c.layer_is_moe(layer);
    case Use::Router:
    case Use::Experts:
    case Use::RouterBias: return c.layer_is_moe(layer);
    case Use::Shared: return c.layer_is_moe(layer) && (c.n_shared_experts > 0 || c.shared_expert_ffn > 0);
    case Use::SharedGate: return c.layer_is_moe(layer) && c.shared_expert_ffn > 0;
    case Use::Sandwich: return c.sandwich_norms || c.post_norms_only;
    case Use::Kv: return !mla && !lay.fused_qkv;
    case Use::Q: return (!mla || c.mla.q_lora_rank == 0) && !lay.fused_qkv;
    case Use::Qkv: return lay.fused_qkv;
    case Use::Gate: return !c.layer_is_moe(layer) && !gate_up_fused(c);
    case Use::FfnNorm: return !mlp_norm_is_post_attention(c) && !c.post_norms_only;
    case Use::PostNorm: return c.sandwich_norms || mlp_norm_is_post_attention(c) || c.post_norms_only;
    case Use::OBias: return c.o_bias;
    case Use::Sinks: return c.attn_sinks;
    case Use::MoeBias: return c.moe_bias && c.layer_is_moe(layer);
    case Use::ExpertBias: return c.moe_bias && c.layer_is_moe(layer);
    case Use::QLora: return mla && c.mla.q_lora_rank > 0;
    case Use::Mla: return mla;
    case Use::KvB: return mla && !lay.split_kv_b;
    case Use::KvBSplit: return mla && lay.split_kv_b;
  }
  return false;
}

const char* why_not(Use u) {
  switch (u) {
    case Use::QkvBias: return "this architecture has no Q/K/V biases";
    case Use::QkNorm: return "this architecture has no Q/K norm";
    case Use::InputNorm: return "olmo2 has no norm before attention";
    case Use::Dense: return "the layer is a mixture of experts";
    case Use::Router:
    case Use::Experts:
    case Use::RouterBias: return "the layer is dense";
    case Use::Shared: return "the layer is dense or expert_shared_count is 0";
    case Use::SharedGate: return "the layer is dense or the model's shared experts are not gated (only qwen2moe's are)";
    case Use::Sandwich: return "this architecture has no norms on the attention and MLP outputs";
    case Use::Kv:
      return "multi-head latent attention has no per-head K/V projections, and a file with attn_qkv no separate ones";
    case Use::Q: return "attention.q_lora_rank is set: the query goes through attn_q_a / attn_q_b";
    case Use::QLora: return "attention.q_lora_rank is 0 or absent, or the model has no latent attention";
    case Use::Mla: return "the model has no latent attention";
    case Use::KvB: return "attention.key_length_mla says kv_b is split into attn_k_b / attn_v_b";
    case Use::KvBSplit: return "attention.key_length_mla is absent: kv_b is one attn_kv_b tensor";
    case Use::Qkv: return "layer 0 has no attn_qkv: q, k and v are separate tensors";
    case Use::Gate: return "the layer is a mixture of experts, or phi3 / glm4, whose ffn_up holds the gate rows too";
    case Use::FfnNorm: return "gpt-oss, glm4moe and seed_oss name the MLP's input norm post_attention_norm; olmo2 has none";
    case Use::PostNorm: return "this architecture has no norm named post_attention_norm";
    case Use::OBias: return "this architecture has no attention output bias";
    case Use::Sinks: return "this architecture has no attention sinks";
    case Use::MoeBias:
    case Use::ExpertBias: return "this architecture has no router or expert biases, or the layer is dense";
    default: return "";
  }
}

// An MTP layer's own tensors, "nextn.eh_proj.weight" -> "eh_proj.weight" (llama.cpp's names for the
// checkpoint's model.layers.N.*); "" for a name that is not one of them.
std::string nextn_hf_name(std::string_view rest) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"nextn.eh_proj.weight", "eh_proj.weight"},
      {"nextn.enorm.weight", "enorm.weight"},
      {"nextn.hnorm.weight", "hnorm.weight"},
      {"nextn.embed_tokens.weight", "embed_tokens.weight"},
      {"nextn.shared_head_head.weight", "shared_head.head.weight"},
      {"nextn.shared_head_norm.weight", "shared_head.norm.weight"},
  };
  for (const auto& [gguf, hf] : kNames)
    if (gguf == rest) return std::string(hf);
  return "";
}

// "blk.12.attn_q.weight" -> (12, "attn_q.weight"); false for other names.
bool split_layer_name(std::string_view name, int64_t& layer, std::string_view& rest) {
  if (name.substr(0, 4) != "blk.") return false;
  name.remove_prefix(4);
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  // Decimal as llama.cpp writes it: "blk.00." or "blk.-1." would alias or shadow a real layer's tensor.
  if (name[0] == '-' || (name[0] == '0' && dot > 1)) return false;
  const auto r = std::from_chars(name.data(), name.data() + dot, layer);
  if (r.ec != std::errc() || r.ptr != name.data() + dot) return false;
  rest = name.substr(dot + 1);
  return true;
}

DType tensor_dtype(const GgufTensorInfo& t) {
  const auto d = ggml_type_to_dtype(t.type);
  if (!d)
    fail("GGUF {}: tensor \"{}\" has type {}, which dpserve cannot compute with (supported: F32, F16, BF16, Q8_0, "
         "Q4_0, Q4_K, Q5_K, Q6_K, and Q5_0 / Q5_1 / MXFP4 as Q8_0; Q4_K_M, Q5_K_M and MXFP4_MOE files use only these)",
         t.file, t.name, ggml_type_name(t.type));
  return *d;
}

// GGUF lists dimensions fastest first; the store (like safetensors) slowest first.
std::vector<int64_t> hf_shape(const GgufTensorInfo& t) { return std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()); }

// Older llama (Mixtral) files, from before llama.cpp stacked the experts: one 2-D tensor per
// expert, "ffn_gate.3.weight" -> the stacked tensor's row ("ffn_gate_exps.weight") and 3.
const LayerName* split_expert_name(std::string_view rest, int64_t& expert) {
  for (const LayerName& n : kLayerNames) {
    if (n.use != Use::Experts) continue;
    const std::string_view stem = n.gguf.substr(0, n.gguf.find("_exps"));  // "ffn_gate"
    if (rest.size() <= stem.size() + 8 || rest.substr(0, stem.size() + 1) != std::string(stem) + "." ||
        rest.substr(rest.size() - 7) != ".weight")
      continue;
    const std::string_view num = rest.substr(stem.size() + 1, rest.size() - stem.size() - 8);
    const auto r = std::from_chars(num.data(), num.data() + num.size(), expert);
    if (r.ec == std::errc() && r.ptr == num.data() + num.size() && expert >= 0) return &n;
  }
  return nullptr;
}

// "blk.N.ffn_gate.E.weight"
std::string per_expert_name(int64_t layer, const LayerName& n, int64_t e) {
  return "blk." + std::to_string(layer) + "." + std::string(n.gguf.substr(0, n.gguf.find("_exps"))) + "." +
         std::to_string(e) + ".weight";
}

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

// blk.N.ffn_*_exps.bias [experts, width] -> model.layers.N.mlp.experts.E.*_proj.bias [width], views in place.
void add_expert_biases(const GgufTensorInfo& t, DType dt, int64_t n_experts, int64_t width, const std::string& prefix,
                       std::string_view hf, WeightStore& store) {
  if (t.ne != std::vector<int64_t>{width, n_experts} || dtype_is_quantized(dt))
    fail("GGUF {}: tensor \"{}\" must be a float [{} experts, {}] (listed fastest first: {} x {}), is {} of "
         "dimensions {}", t.file, t.name, n_experts, width, width, n_experts, dtype_name(dt), fmt::join(t.ne, " x "));
  for (int64_t e = 0; e < n_experts; ++e)
    store.add(prefix + "mlp.experts." + std::to_string(e) + "." + std::string(hf),
              TensorInfo{dt, {width}, static_cast<const uint8_t*>(t.data) + e * width * dtype_size(dt), t.file});
}

// A GGUF MXFP4 tensor (ggml's block_mxfp4: the scale byte, then 16 code bytes) as Q8_0 holding the
// same values, or bf16 when a scale is beyond an f16 (model/mxfp4.h): the int8 kernels then run it.
GgufTensorInfo mxfp4_tensor(const GgufTensorInfo& t, WeightStore& store) {
  GgufTensorInfo q = t;
  const int64_t blocks = t.numel() / 32;
  const auto* p = static_cast<const uint8_t*>(t.data);
  const Mxfp4Blocks b{p + 1, p, 17, 17, Mxfp4Packing::Halves};
  if (mxfp4_fits_q8_0(b, 0, blocks, "GGUF " + t.file + ": tensor \"" + t.name + "\"")) {
    std::vector<uint8_t> out(size_t(blocks) * 34);
    mxfp4_to_q8_0(b, 0, blocks, out.data());
    q.type = kGgmlQ8_0;
    q.bytes = out.size();
    q.data = store.keep(std::move(out));
  } else {
    std::vector<uint8_t> out(size_t(blocks) * 32 * sizeof(bf16_t));
    mxfp4_to_bf16(b, 0, blocks, reinterpret_cast<bf16_t*>(out.data()));
    q.type = kGgmlBf16;
    q.bytes = out.size();
    q.data = store.keep(std::move(out));
  }
  store.release(t.data, size_t(t.bytes));  // the file's blocks: read once, here
  return q;
}

// llama.cpp's converter stores kv_b_proj [H * (nope + vd), r] split per head for its absorbed
// MLA: attn_k_b [H, r, nope] (each head's W_UK transposed) and attn_v_b [H, vd, r]. MlaAttention
// loads kv_b_proj (and transposes W_UK itself), so it is rebuilt here: float types are moved
// exactly in their own type; when either part is block-quantized (a k_b row is only nope wide,
// its blocks along the other axis) both are decoded and quantized again to Q8_0 along
// kv_lora_rank (fp32 where that is not whole blocks): the fp32 copy this replaced held 3.8x the
// bytes (4 GB on DeepSeek-V3's 61 layers of 128 heads) and ran prefill's products on fp32 FMAs.
// The decompressed form (prefill) reads that; the absorbed one (decode) reads the block-quantized
// parts as they are, kept beside it as self_attn.w_uk_t / w_uv (MlaAttention): decoded to fp32
// they were 3.8x (Q8_0) to 7x (Q4_K) the bytes decode streams.
void add_kv_b(const GgufTensorInfo& kb, const GgufTensorInfo& vb, const ModelConfig& c, const std::string& prefix,
              WeightStore& store) {
  const int64_t H = c.n_heads, r = c.mla.kv_lora_rank, nope = c.mla.qk_nope_head_dim, vd = c.mla.v_head_dim;
  const int64_t kvw = nope + vd;
  if (kb.ne != std::vector<int64_t>{nope, r, H})
    fail("GGUF {}: tensor \"{}\" must be [{} heads, kv_lora_rank {}, qk_nope {}] (listed fastest first: {} x {} x {}), "
         "has dimensions {}", kb.file, kb.name, H, r, nope, nope, r, H, fmt::join(kb.ne, " x "));
  if (vb.ne != std::vector<int64_t>{r, vd, H})
    fail("GGUF {}: tensor \"{}\" must be [{} heads, v_head_dim {}, kv_lora_rank {}] (listed fastest first: {} x {} x "
         "{}), has dimensions {}", vb.file, vb.name, H, vd, r, r, vd, H, fmt::join(vb.ne, " x "));
  const DType kt = tensor_dtype(kb), vt = tensor_dtype(vb);
  const bool quantized = dtype_is_quantized(kt) || dtype_is_quantized(vt);
  const DType out = !quantized && kt == vt ? kt : quantized && r % dtype_block_elems(DType::Q8_0) == 0 ? DType::Q8_0 : DType::F32;
  const size_t rb = dtype_row_bytes(out, r);
  std::vector<uint8_t> bytes(size_t(H * kvw) * rb);
  std::vector<float> row(static_cast<size_t>(r)), uk(static_cast<size_t>(r * nope));
  const auto* kp = static_cast<const uint8_t*>(kb.data);
  const auto* vp = static_cast<const uint8_t*>(vb.data);
  // kv_b_proj's row `dst` from the fp32 row in `row`.
  auto put = [&](int64_t dst) {
    if (out == DType::Q8_0) quantize_row(out, row.data(), &bytes[size_t(dst) * rb], r);
    else std::memcpy(&bytes[size_t(dst) * rb], row.data(), rb);
  };
  for (int64_t h = 0; h < H; ++h) {
    if (!quantized && out == kt) {  // float parts of one type, moved exactly: row k of W_UK^T is column k of k_nope
      const size_t es = dtype_size(out);
      for (int64_t k = 0; k < r; ++k)
        for (int64_t n = 0; n < nope; ++n)
          std::memcpy(&bytes[size_t((h * kvw + n) * r + k) * es], kp + (h * r + k) * dtype_row_bytes(kt, nope) + size_t(n) * es,
                      es);
      for (int64_t j = 0; j < vd; ++j)
        std::memcpy(&bytes[size_t(h * kvw + nope + j) * rb], vp + (h * vd + j) * dtype_row_bytes(vt, r), rb);
      continue;
    }
    for (int64_t k = 0; k < r; ++k)
      dequantize_row(kt, kp + (h * r + k) * dtype_row_bytes(kt, nope), &uk[size_t(k * nope)], nope);
    for (int64_t n = 0; n < nope; ++n) {
      for (int64_t k = 0; k < r; ++k) row[size_t(k)] = uk[size_t(k * nope + n)];
      put(h * kvw + n);
    }
    for (int64_t j = 0; j < vd; ++j) {
      dequantize_row(vt, vp + (h * vd + j) * dtype_row_bytes(vt, r), row.data(), r);
      put(h * kvw + nope + j);
    }
  }
  store.add_owned(prefix + "self_attn.kv_b_proj.weight", TensorInfo{out, {H * kvw, r}, nullptr, kb.file},
                  std::move(bytes));
  // Each head's rows must start a row group of the repacked form (kernels/repack.h): true of every
  // DeepSeek (kv_lora_rank 512, v_head_dim 128).
  if ((dtype_is_quantized(kt) || dtype_is_quantized(vt)) && r % interleave_group_rows(kt) == 0 &&
      vd % interleave_group_rows(vt) == 0) {
    store.add(prefix + "self_attn.w_uk_t.weight", TensorInfo{kt, {H * r, nope}, kb.data, kb.file});
    store.add(prefix + "self_attn.w_uv.weight", TensorInfo{vt, {H * vd, r}, vb.data, vb.file});
  }
}

}  // namespace

void load_gguf(const std::string& path, ModelConfig& config, WeightStore& store) {
  const GgufSet g(path);
  // First: the tensors converted as they load release the file pages they were read from.
  for (const auto& f : g.files()) store.add_file(f->mapping());
  config = gguf_model_config(g);
  const ModelConfig& c = config;
  const Layout lay{c, c.mla.enabled() && deepseek2_split_kv_b(g, c.arch_name + "."),
                   c.arch == Arch::Phi3 && g.tensor("blk.0.attn_qkv.weight") != nullptr};
  std::set<std::string> seen;
  std::map<int64_t, std::array<const GgufTensorInfo*, 2>> kv_b_parts;  // layer -> attn_k_b, attn_v_b
  // Q5_0 / Q5_1 tensors as Q8_0, MXFP4 as Q8_0 or bf16 (stable addresses: kv_b_parts points here)
  std::deque<GgufTensorInfo> converted;
  for (const GgufTensorInfo* tp : g.tensors()) {
    if (tp->type == kGgmlMxfp4) {
      converted.push_back(mxfp4_tensor(*tp, store));
      tp = &converted.back();
    }
    if (tp->type == kGgmlQ5_0 || tp->type == kGgmlQ5_1) {
      GgufTensorInfo q = *tp;
      const int64_t blocks = tp->numel() / 32;
      q.data = store.keep(q5_to_q8_0(tp->type, static_cast<const uint8_t*>(tp->data), blocks));
      store.release(tp->data, size_t(tp->bytes));  // the file's blocks: read once, here
      q.type = kGgmlQ8_0;
      q.bytes = uint64_t(blocks) * 34;
      converted.push_back(std::move(q));
      tp = &converted.back();
    }
    const GgufTensorInfo& t = *tp;
    // Read into the config.
    if (t.name == "rope_freqs.weight" || (c.arch == Arch::Phi3 && (t.name == "rope_factors_long.weight" ||
                                                                    t.name == "rope_factors_short.weight")))
      continue;
    int64_t layer = -1;
    std::string_view rest;
    if (split_layer_name(t.name, layer, rest)) {
      // glm4moe's and deepseek2's multi-token-prediction layers (after the decoder layers; block_count counts them):
      // kept under their Hugging Face names, which the main model never reads and NEXTN drafts with.
      const bool mtp = layer >= c.n_layers && layer < c.n_layers + c.nextn_layers;
      if (mtp && rest.substr(0, 6) == "nextn.") {
        const std::string hf = nextn_hf_name(rest);
        if (hf.empty()) fail("GGUF {}: tensor \"{}\" is not one dpserve uses for an MTP layer", t.file, t.name);
        store.add("model.layers." + std::to_string(layer) + "." + hf,
                  TensorInfo{tensor_dtype(t), hf_shape(t), t.data, t.file});
        seen.insert(t.name);
        continue;
      }
      if (layer >= c.n_layers && !mtp)
        fail("GGUF {}: tensor \"{}\" belongs to layer {}, but the model has {} layers (block_count)", t.file, t.name,
             layer, c.n_layers);
      const LayerName* rule = nullptr;
      for (const LayerName& n : kLayerNames)
        if (n.gguf == rest) rule = &n;
      int64_t expert = -1;
      if (!rule && c.arch == Arch::Llama && (rule = split_expert_name(rest, expert)) != nullptr) {
        if (!applies(rule->use, lay, layer))
          fail("GGUF {}: tensor \"{}\" is not used by this {} model ({})", t.file, t.name, c.arch_name,
               why_not(rule->use));
        const bool down = rule->gguf == "ffn_down_exps.weight";
        const std::vector<int64_t> want = down ? std::vector<int64_t>{c.moe_ffn, c.hidden}
                                               : std::vector<int64_t>{c.hidden, c.moe_ffn};
        if (expert >= c.n_experts || t.ne != want)
          fail("GGUF {}: tensor \"{}\" must be expert < {} (expert_count) of dimensions {} (listed fastest first), "
               "has dimensions {}", t.file, t.name, c.n_experts, fmt::join(want, " x "), fmt::join(t.ne, " x "));
        store.add("model.layers." + std::to_string(layer) + ".mlp.experts." + std::to_string(expert) + "." +
                      std::string(rule->hf),
                  TensorInfo{tensor_dtype(t), hf_shape(t), t.data, t.file});
        seen.insert(t.name);
        continue;
      }
      if (!rule) fail("GGUF {}: tensor \"{}\" is not one dpserve uses for a {} model", t.file, t.name, c.arch_name);
      if (!applies(rule->use, lay, layer))
        fail("GGUF {}: tensor \"{}\" is not used by this {} model ({})", t.file, t.name, c.arch_name,
             why_not(rule->use));
      const DType dt = tensor_dtype(t);
      const std::string prefix = "model.layers." + std::to_string(layer) + ".";
      if (rule->use == Use::Experts) {
        add_experts(t, dt, c.n_experts, prefix, rule->hf, store);
      } else if (rule->use == Use::ExpertBias) {
        const int64_t width = rule->gguf == "ffn_down_exps.bias" ? c.hidden : c.moe_ffn;
        add_expert_biases(t, dt, c.n_experts, width, prefix, rule->hf, store);
      } else if (rule->use == Use::KvBSplit) {
        kv_b_parts[layer][rest == "attn_k_b.weight" ? 0 : 1] = &t;
      } else {
        // With sandwich norms (gemma3) ffn_norm is the MLP's input norm and post_attention_norm
        // takes the Hugging Face name the other architectures give ffn_norm.
        const bool pre_ffn = c.sandwich_norms && rule->gguf == "ffn_norm.weight";
        const bool gate_up = gate_up_fused(c) && rule->gguf == "ffn_up.weight";
        const bool router = c.arch == Arch::GptOss && rule->gguf == "ffn_gate_inp.weight";  // gpt-oss's mlp.router
        const std::string_view hf = pre_ffn    ? "pre_feedforward_layernorm.weight"
                                    : gate_up ? "mlp.gate_up_proj.weight"
                                    : router  ? "mlp.router.weight"
                                              : rule->hf;
        std::string name = prefix + std::string(hf);
        // Qwen2-MoE's one shared expert is mlp.shared_expert (DeepSeek's mlp.shared_experts).
        if (rule->use == Use::Shared && c.shared_expert_ffn > 0)
          name = prefix + "mlp.shared_expert." + std::string(hf.substr(std::string_view("mlp.shared_experts.").size()));
        // A router bias is one value per expert, whatever trailing 1s the file's dims carry (llama.cpp's
        // converter keeps ERNIE's [1, experts] moe_statics as [experts, 1]).
        std::vector<int64_t> shape = hf_shape(t);
        if (rule->use == Use::RouterBias) shape = {t.numel()};
        store.add(name, TensorInfo{dt, shape, t.data, t.file});
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
      if (!applies(n.use, lay, l) || n.use == Use::RouterBias) continue;
      if (n.use == Use::Experts && c.arch == Arch::Llama) {  // stacked, or one tensor per expert
        int64_t split = 0;
        for (int64_t e = 0; e < c.n_experts; ++e) split += seen.count(per_expert_name(l, n, e));
        if (split > 0 && seen.count(name))
          fail("GGUF {}: layer {} has both \"{}\" and per-expert tensors such as \"{}\"", g.path(), l, name,
               per_expert_name(l, n, 0));
        if (split > 0) {
          for (int64_t e = 0; e < c.n_experts; ++e)
            if (!seen.count(per_expert_name(l, n, e)))
              fail("GGUF {}: tensor \"{}\" is missing (the layer stores its experts one tensor each)", g.path(),
                   per_expert_name(l, n, e));
          continue;
        }
      }
      if (!seen.count(name)) fail("GGUF {}: tensor \"{}\" is missing (a {} model needs it)", g.path(), name, c.arch_name);
    }
  for (const auto& [l, parts] : kv_b_parts)
    add_kv_b(*parts[0], *parts[1], c, "model.layers." + std::to_string(l) + ".", store);
  // noaux_tc selection without exp_probs_b (groups only, as DeepSeek-V2's files): llama.cpp then
  // selects on the unbiased scores, which is a zero bias.
  if (c.routing.topk == MoeRouting::TopK::NoauxTc)
    for (int64_t l = 0; l < c.n_layers; ++l)
      if (c.layer_is_moe(l) && !seen.count("blk." + std::to_string(l) + ".exp_probs_b.bias")) {
        if (c.arch_name == "minimax-m2")  // llama.cpp requires it: its router always adds the bias
          fail("GGUF {}: tensor \"blk.{}.exp_probs_b.bias\" is missing (a minimax-m2 model needs it)", g.path(), l);
        store.add_owned("model.layers." + std::to_string(l) + ".mlp.gate.e_score_correction_bias",
                        TensorInfo{DType::F32, {c.n_experts}, nullptr, g.path()},
                        std::vector<uint8_t>(size_t(c.n_experts) * sizeof(float), 0));
      }
}

}  // namespace dpserve
