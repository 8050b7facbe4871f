#include "model/model.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/bf16.h"
#include "kernels/ops.h"
#include "model/fp8_checkpoint.h"
#include "model/gguf_loader.h"
#include "model/gguf_set.h"
#include "model/gpt_oss_experts.h"
#include "model/granite_moe_experts.h"
#include "model/llama2c.h"
#include "model/llama4_experts.h"
#include "model/moe.h"
#include "model/weight_prep.h"

namespace fs = std::filesystem;

namespace dpserve {

struct Model::Layer {
  std::vector<float> attn_norm, mlp_norm, q_norm, k_norm;
  // Gemma's sandwich norms: on the attention / MLP output before the residual add (else empty).
  std::vector<float> post_attn_norm, post_mlp_norm;
  WeightView wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;
  // o_proj's bias (gpt-oss): only on the attention group's rank 0, whose partial sum then carries it.
  std::vector<float> bo;
  std::vector<float> sinks;  // gpt-oss: this rank's query heads' sink logits
  // Dense MLP (this rank's slice of the intermediate dimension).
  WeightView gate, up, down;
  std::unique_ptr<MoeLayer> moe;
  std::unique_ptr<MlaAttention> mla;  // DeepSeek: replaces wq/wk/wv/wo
};

void ForwardBatch::add(const int32_t* toks, int64_t n, int64_t pos0, const int32_t* pages, bool all_logits) {
  AttnSeq s;
  s.q_row = int64_t(tokens.size());
  s.n_q = n;
  s.pos0 = pos0;
  s.pages = pages;
  tokens.insert(tokens.end(), toks, toks + n);
  seqs.push_back(s);
  if (all_logits) {
    for (int64_t i = 0; i < n; ++i) logit_rows.push_back(s.q_row + i);
  } else if (n > 0) {
    logit_rows.push_back(s.q_row + n - 1);
  }
}

Model::~Model() = default;

int32_t Model::add_lora(const std::string& dir) {
  const int32_t slot = lora_count();
  load_lora(slot, dir);
  return slot;
}

void Model::load_lora(int32_t slot, const std::string& dir) {
  if (nextn_) fail("LoRA adapter {}: adapters apply to the main model, not to a NEXTN draft layer", dir);
  if (cfg_.arch == Arch::Phi3 || cfg_.arch_name == "Glm4ForCausalLM" || cfg_.arch_name == "glm4")
    fail("LoRA adapter {}: adapters for Phi-3 / Phi-4 and GLM-4 models (fused qkv_proj / gate_up_proj) are not supported",
         dir);
  if (cfg_.arch == Arch::GptOss) fail("LoRA adapter {}: adapters for gpt-oss models are not supported", dir);
  DP_CHECK(slot >= 0 && slot <= lora_count() && !lora_loaded(slot), "LoRA slot {} is taken or out of range ({} slots)",
           slot, lora_count());
  // Read completely before anything changes: a folder this model cannot run leaves the model as it was.
  LoraAdapter a = load_lora_adapter(dir, lora_shape_);
  if (slot == lora_count()) loras_.emplace_back();
  loras_[size_t(slot)] = std::move(a);
  lora_mlp_ = lora_mlp_ || loras_[size_t(slot)].targets_mlp();
}

void Model::remove_lora(int32_t slot) {
  DP_CHECK(lora_loaded(slot), "LoRA slot {} is not loaded", slot);
  loras_[size_t(slot)] = LoraAdapter{};  // the slot stays, empty, for a later load_lora
  while (!loras_.empty() && !lora_loaded(lora_count() - 1)) loras_.pop_back();
  // Whether the MLP gathers adapter ids (a collective) follows the adapters loaded: every rank loads
  // and removes the same ones, so every rank decides the same.
  lora_mlp_ = false;
  for (const auto& a : loras_) lora_mlp_ = lora_mlp_ || a.targets_mlp();
}

std::vector<bool> Model::lora_loaded_slots() const {
  std::vector<bool> out;
  for (int32_t s = 0; s < lora_count(); ++s) out.push_back(lora_loaded(s));
  return out;
}

int64_t Model::lora_bytes() const {
  int64_t n = 0;
  for (const auto& a : loras_) n += a.bytes;
  return n;
}

// Phi-3 checkpoints fuse q, k and v into self_attn.qkv_proj and gate, up into mlp.gate_up_proj (in
// that order; GGUF files as attn_qkv, or split, and ffn_up), GLM-4's gate and up too; the layers load
// them as the separate projections the other models have.
static void split_fused_projections(const ModelConfig& c, WeightStore& store) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    if (store.has(p + "self_attn.qkv_proj.weight"))  // GGUF files may hold them split
      store.split_rows(p + "self_attn.qkv_proj.weight", {{p + "self_attn.q_proj.weight", q},
                                                       {p + "self_attn.k_proj.weight", kv},
                                                       {p + "self_attn.v_proj.weight", kv}});
    store.split_rows(p + "mlp.gate_up_proj.weight",
                     {{p + "mlp.gate_proj.weight", c.ffn}, {p + "mlp.up_proj.weight", c.ffn}});
  }
}

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  if (!fs::exists(path)) fail("model path {} does not exist", path);
  const bool gguf = !find_gguf_model(path).empty();
  if (gguf) {
    load_gguf(path, m->cfg_, m->store_);
  } else if (fs::is_directory(path)) {
    fs::path cfg_path = fs::path(path) / "config.json";
    if (!fs::exists(cfg_path)) fail("{}: no config.json (expected a Hugging Face model folder)", path);
    std::ifstream in(cfg_path);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const std::exception& e) {
      fail("{}: malformed JSON: {}", cfg_path.string(), e.what());
    }
    m->cfg_ = ModelConfig::from_hf_json(j);
    load_safetensors_folder(path, m->store_);
    attach_fp8_scales(m->cfg_, m->store_);
    if (m->cfg_.arch_name == "Gemma3ForConditionalGeneration" || m->cfg_.arch_name == "Mistral3ForConditionalGeneration" ||
        m->cfg_.arch_name == "Llama4ForConditionalGeneration") {
      // Its language model, nested as transformers < 4.52 (language_model.model.) or later
      // (model.language_model.) saved it; the vision tower and projector are not run.
      m->store_.rename_prefix("language_model.model.", "model.");
      m->store_.rename_prefix("language_model.lm_head.", "lm_head.");
      m->store_.rename_prefix("model.language_model.", "model.");
      for (const char* p : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.",
                            "vision_model.", "model.vision_model."})
        m->store_.drop_prefix(p);
    }
    if (m->cfg_.is_gemma()) {
      // Gemma's scaled embedding casts sqrt(hidden_size) to the embedding's dtype first.
      const auto& all = m->store_.all();
      const auto it = all.find("model.embed_tokens.weight");
      const DType dt = it == all.end() ? DType::F32 : it->second.dtype;
      float& s = m->cfg_.embed_scale;
      if (dt == DType::BF16) s = bf16_to_f32(f32_to_bf16(s));
      if (dt == DType::F16) s = f16_to_f32(f32_to_f16(s));
    }
    if (m->cfg_.vision.enabled()) {
      // Newer Qwen2.5-VL checkpoints nest the language model and the tower one level deeper.
      m->store_.rename_prefix("model.language_model.", "model.");
      m->store_.rename_prefix("model.visual.", "visual.");
      m->image_cfg_ = ImagePreprocessConfig::load(path);
      m->vision_ids_ = VisionTokenIds::load(path);
      const auto& v = m->cfg_.vision;
      const auto& p = m->image_cfg_;
      if (p.patch_size != v.patch || p.merge_size != v.merge || p.temporal_patch_size != v.temporal_patch ||
          v.in_chans != 3)
        fail("{}: preprocessor_config.json (patch {}, merge {}, temporal {}) does not match vision_config (patch {}, "
             "merge {}, temporal {}, {} channels)",
             path, p.patch_size, p.merge_size, p.temporal_patch_size, v.patch, v.merge, v.temporal_patch, v.in_chans);
      if (m->vision_ids_.image_pad < 0 || m->vision_ids_.image_pad >= m->cfg_.vocab)
        fail("{}: image_token_id is outside the vocabulary", path);
    }
  } else {
    load_llama2c(path, m->cfg_, m->store_);
  }
  if (m->cfg_.arch == Arch::Phi3 || m->cfg_.arch_name == "Glm4ForCausalLM" || m->cfg_.arch_name == "glm4")
    split_fused_projections(m->cfg_, m->store_);
  if (m->cfg_.arch_name == "Glm4ForCausalLM") {
    // Glm4DecoderLayer's norms under the names Gemma's sandwich uses: post_self_attn_layernorm (on the
    // attention output), post_attention_layernorm (the MLP's input), post_mlp_layernorm (on its output).
    for (int64_t l = 0; l < m->cfg_.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      m->store_.rename_prefix(p + "post_attention_layernorm.", p + "pre_feedforward_layernorm.");
      m->store_.rename_prefix(p + "post_self_attn_layernorm.", p + "post_attention_layernorm.");
      m->store_.rename_prefix(p + "post_mlp_layernorm.", p + "post_feedforward_layernorm.");
    }
  }
  if (m->cfg_.arch_name == "Ernie4_5_MoeForCausalLM") {
    // The router's selection bias lives in mlp.moe_statics as [1, experts] (one group): read as the gate's
    // e_score_correction_bias, as noaux_tc's is. Its multi-token-prediction tensors (model.mtp_*) are not run.
    for (int64_t l = 0; l < m->cfg_.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
      if (!m->store_.has(p + "moe_statics.e_score_correction_bias")) continue;
      TensorInfo t = m->store_.get(p + "moe_statics.e_score_correction_bias");
      if (t.shape == std::vector<int64_t>{1, m->cfg_.n_experts}) t.shape = {m->cfg_.n_experts};
      m->store_.add(p + "gate.e_score_correction_bias", t);
      m->store_.drop_prefix(p + "moe_statics.");
    }
    m->store_.drop_prefix("model.mtp_");
  }
  if (m->cfg_.arch_name == "MiniMaxM2ForCausalLM") {
    // MiniMaxM2SparseMoeBlock keeps the router's selection bias beside the gate, not in it: read as the
    // gate's e_score_correction_bias, as noaux_tc's is.
    for (int64_t l = 0; l < m->cfg_.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".block_sparse_moe.";
      m->store_.rename(p + "e_score_correction_bias", p + "gate.e_score_correction_bias");
    }
  }
  if (m->cfg_.arch == Arch::GptOss && !gguf) split_gpt_oss_experts(m->cfg_, m->store_);  // GGUF: split already
  if (m->cfg_.arch_name == "GraniteMoeForCausalLM") split_granite_moe_experts(m->cfg_, m->store_);
  if (m->cfg_.is_llama4() && !gguf) split_llama4_experts(m->cfg_, m->store_);
  if (const std::string left = m->store_.bytes_left(); !left.empty())
    fail("{}: tensor \"{}\" is of dtype U8, which {} does not load", path, left, m->cfg_.arch_name);
  if (opts.context_length > 0) m->cfg_.rope_scaling.use_longrope(opts.context_length);
  if (opts.nextn) {
    if (!m->cfg_.has_mtp_layer_layout() || m->cfg_.nextn_layers < 1)
      fail("{}: --speculative-algorithm NEXTN needs a DeepSeek-V3, GLM-4.5 or GLM-4.7-Flash checkpoint with "
           "num_nextn_predict_layers >= 1 in config.json (GGUF: nextn_predict_layers; this one, {}, has {}){}", path,
           m->cfg_.arch_name, m->cfg_.nextn_layers,
           // llama.cpp's converter leaves DeepSeek-V3's MTP layer out (and keeps GLM-4.5's and GLM-4.7-Flash's).
           gguf && m->cfg_.is_deepseek() ? "; llama.cpp's converter leaves DeepSeek-V3's MTP layer out of GGUF "
                                           "files: serve the Hugging Face folder" : "");
    m->nextn_ = true;
    m->layer_base_ = m->cfg_.n_layers;
    m->cfg_.n_layers = 1;
  }
  m->par_ = opts.parallel;
  m->comm_ = opts.comm;
  m->vision_placement_ = opts.vision;
  if ((m->par_.attn.size > 1 || m->par_.mlp.size > 1 || m->par_.vocab.size > 1) && !m->comm_)
    fail("internal: a sharded model needs a communicator");
  m->init_layers(opts);
  const int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  if (opts.team) {
    m->team_ = opts.team;
  } else {
    m->own_team_ = std::make_unique<ThreadTeam>(threads);
    m->team_ = m->own_team_.get();
  }
  return m;
}

void Model::encode_image(const float* patches, int64_t grid_h, int64_t grid_w, float* out) {
  if (!vision_) fail("this model takes no images");
  // Sharded: by windows over the attention group (the ranks that hold this request); one rank, or
  // replicated: the whole image here.
  const ShardSpec shard = vision_placement_ == VisionPlacement::kSharded ? par_.attn : ShardSpec{};
  vision_->prepare(grid_h, grid_w, shard);
  team_->run([&](Team& t) { vision_->forward(t, patches, grid_h, grid_w, out, comm_); });
}

KVPoolConfig Model::kv_config(int64_t n_pages, int64_t page_size) const {
  // MLA's latent row is per token, not per head: every attention rank of a group holds all of it.
  KVPoolConfig c = cfg_.mla.enabled() ? KVPoolConfig::latent(cfg_.n_layers, cfg_.mla.kv_lora_rank,
                                                              cfg_.mla.qk_rope_head_dim, page_size, n_pages)
                                     : KVPoolConfig{cfg_.n_layers, n_kv_local_, cfg_.head_dim, page_size, n_pages};
  c.elem = kv_elem_;
  return c;
}

void Model::init_layers(const LoadOptions& opts) {
  const auto& c = cfg_;
  const int64_t hd = c.head_dim;
  const ShardSpec& at = par_.attn;
  if (c.n_heads % at.size != 0)
    fail("--tp-size: {} attention heads cannot be split over {} ranks", c.n_heads, at.size);
  n_heads_local_ = c.n_heads / at.size;
  if (c.n_kv_heads >= at.size) {
    if (c.n_kv_heads % at.size != 0)
      fail("--tp-size: {} KV heads cannot be split over {} ranks", c.n_kv_heads, at.size);
    n_kv_local_ = c.n_kv_heads / at.size;
    kv_head0_ = at.rank * n_kv_local_;
  } else {
    // Fewer KV heads than ranks: each rank keeps a copy of the one KV head its query heads use.
    n_kv_local_ = 1;
    kv_head0_ = (at.rank * n_heads_local_) / (c.n_heads / c.n_kv_heads);
  }
  const int64_t q0 = at.rank * n_heads_local_ * hd;
  const int64_t H = c.hidden;
  // OLMo 2 / OLMoE normalise each token's whole k: ranks holding copies of a KV head would count it twice.
  if (c.qk_norm_whole && at.size > 1 && c.n_kv_heads < at.size)
    fail("--tp-size: {}'s k_norm spans all {} KV heads, which cannot be split over {} attention ranks (use at most "
         "{}, or --dp-size with --enable-dp-attention)", c.arch_name, c.n_kv_heads, at.size, c.n_kv_heads);
  rope_ = std::make_unique<RopeTable>(c);
  if (c.rope_local_theta > 0) {
    ModelConfig local = c;
    local.rope_theta = c.rope_local_theta;
    local.rope_scaling = RopeScaling{};
    rope_local_ = std::make_unique<RopeTable>(local);
  }

  auto mat = [&](const std::string& n, int64_t r, int64_t k) { return store_.matrix(n, r, k); };
  // RMSNorm weights, with the offset Gemma's checkpoints store them from.
  auto norm = [&](const std::string& n, int64_t len) {
    auto v = store_.vector_f32(n, len);
    for (float& e : v) e += c.norm_offset;
    return v;
  };
  auto slice_vec = [&](const std::string& n, int64_t full, int64_t b, int64_t len) {
    auto v = store_.vector_f32(n, full);
    return std::vector<float>(v.begin() + b, v.begin() + b + len);
  };

  const ShardSpec& ms = par_.mlp;
  bool any_dense = false;
  for (int64_t l = 0; l < c.n_layers; ++l) any_dense |= !c.layer_is_moe(layer_base_ + l);
  if (any_dense && c.ffn % ms.size != 0)
    fail("--tp-size: intermediate_size {} cannot be split over {} ranks", c.ffn, ms.size);
  ffn_local_ = c.ffn / ms.size;
  {
    // LoRA adapters are sliced exactly like the weights below (model/lora.h).
    LoraModelShape& ls = lora_shape_;
    ls.n_layers = c.n_layers;
    ls.mla = c.mla.enabled();
    ls.vision = c.vision.enabled();
    for (int64_t l = 0; l < c.n_layers; ++l) ls.layer_moe.push_back(c.layer_is_moe(layer_base_ + l));
    const int64_t qn = n_heads_local_ * hd, kv0 = kv_head0_ * hd, kvn = n_kv_local_ * hd, f0 = ms.begin(c.ffn);
    ls.slice[kLoraQ] = {c.n_heads * hd, H, q0, qn, 0, H};
    ls.slice[kLoraK] = {c.n_kv_heads * hd, H, kv0, kvn, 0, H};
    ls.slice[kLoraV] = ls.slice[kLoraK];
    ls.slice[kLoraO] = {H, c.n_heads * hd, 0, H, q0, qn};
    ls.slice[kLoraGate] = {c.ffn, H, f0, ffn_local_, 0, H};
    ls.slice[kLoraUp] = ls.slice[kLoraGate];
    ls.slice[kLoraDown] = {H, c.ffn, 0, H, f0, ffn_local_};
  }
  layers_.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(layer_base_ + l) + ".";
    if (!c.post_norms_only) L.attn_norm = norm(p + "input_layernorm.weight", H);
    if (c.post_norms_only) {
      L.post_attn_norm = norm(p + "post_attention_layernorm.weight", H);
      L.post_mlp_norm = norm(p + "post_feedforward_layernorm.weight", H);
    } else if (c.sandwich_norms) {
      L.post_attn_norm = norm(p + "post_attention_layernorm.weight", H);
      L.mlp_norm = norm(p + "pre_feedforward_layernorm.weight", H);
      L.post_mlp_norm = norm(p + "post_feedforward_layernorm.weight", H);
    } else {
      L.mlp_norm = norm(p + "post_attention_layernorm.weight", H);
    }
    if (c.mla.enabled()) {
      L.mla = std::make_unique<MlaAttention>(store_, c, p, at);
    } else {
      L.wq = mat(p + "self_attn.q_proj.weight", c.n_heads * hd, H).row_slice(q0, n_heads_local_ * hd);
      L.wk = mat(p + "self_attn.k_proj.weight", c.n_kv_heads * hd, H).row_slice(kv_head0_ * hd, n_kv_local_ * hd);
      L.wv = mat(p + "self_attn.v_proj.weight", c.n_kv_heads * hd, H).row_slice(kv_head0_ * hd, n_kv_local_ * hd);
      L.wo = shard_cols(mat(p + "self_attn.o_proj.weight", H, c.n_heads * hd), q0, n_heads_local_ * hd,
                        p + "self_attn.o_proj.weight", "--tp-size (with --dp-size)");
      if (c.qkv_bias) {
        L.bq = slice_vec(p + "self_attn.q_proj.bias", c.n_heads * hd, q0, n_heads_local_ * hd);
        L.bk = slice_vec(p + "self_attn.k_proj.bias", c.n_kv_heads * hd, kv_head0_ * hd, n_kv_local_ * hd);
        L.bv = slice_vec(p + "self_attn.v_proj.bias", c.n_kv_heads * hd, kv_head0_ * hd, n_kv_local_ * hd);
      }
      if (c.o_bias && at.rank == 0) L.bo = store_.vector_f32(p + "self_attn.o_proj.bias", H);
      if (c.attn_sinks) L.sinks = slice_vec(p + "self_attn.sinks", c.n_heads, q0 / hd, n_heads_local_);
      if (c.qk_norm) {
        L.q_norm = norm(p + "self_attn.q_norm.weight", hd);
        L.k_norm = norm(p + "self_attn.k_norm.weight", hd);
      }
      if (c.qk_norm_whole) {  // this rank's part of the whole-width weights
        L.q_norm = slice_vec(p + "self_attn.q_norm.weight", c.n_heads * hd, q0, n_heads_local_ * hd);
        L.k_norm = slice_vec(p + "self_attn.k_norm.weight", c.n_kv_heads * hd, kv_head0_ * hd, n_kv_local_ * hd);
      }
    }
    if (c.layer_is_moe(layer_base_ + l)) {
      L.moe = std::make_unique<MoeLayer>(store_, c, p, par_);
    } else {
      const int64_t f0 = ms.begin(c.ffn);
      L.gate = mat(p + "mlp.gate_proj.weight", c.ffn, H).row_slice(f0, ffn_local_);
      L.up = mat(p + "mlp.up_proj.weight", c.ffn, H).row_slice(f0, ffn_local_);
      L.down = shard_cols(mat(p + "mlp.down_proj.weight", H, c.ffn), f0, ffn_local_, p + "mlp.down_proj.weight",
                          "--tp-size");
    }
  }
  std::string embed_name = "model.embed_tokens.weight", head_name = "lm_head.weight";
  if (nextn_) {
    // The MTP layer's own copies (DeepSeek-V3 and GLM-4.5 store the embedding and the head again; a
    // checkpoint that drops either shares the main model's, as llama.cpp and vLLM read such files),
    // its norms and projection.
    const std::string p = "model.layers." + std::to_string(layer_base_) + ".";
    if (store_.has(p + "embed_tokens.weight")) embed_name = p + "embed_tokens.weight";
    if (store_.has(p + "shared_head.head.weight")) head_name = p + "shared_head.head.weight";
    final_norm_ = store_.vector_f32(p + "shared_head.norm.weight", H);
    enorm_ = store_.vector_f32(p + "enorm.weight", H);
    hnorm_ = store_.vector_f32(p + "hnorm.weight", H);
    eh_proj_ = mat(p + "eh_proj.weight", H, 2 * H);
  } else {
    final_norm_ = norm("model.norm.weight", H);
  }
  embed_ = mat(embed_name, c.vocab, H);
  const bool own_head = store_.has(head_name) && !(c.tie_embeddings && head_name == "lm_head.weight");
  lm_head_ = own_head ? mat(head_name, c.vocab, H) : embed_;
  if (!own_head && !c.tie_embeddings) fail("weights: {} is missing and tie_word_embeddings is false", head_name);
  if (c.vision.enabled()) vision_ = std::make_unique<VisionTower>(store_, c.vision);
  vocab0_ = par_.vocab.begin(c.vocab);
  vocab_local_ = par_.vocab.end(c.vocab) - vocab0_;
  lm_head_ = lm_head_.row_slice(vocab0_, vocab_local_);
  // The steps look rows of the embedding table up as the file (or the loader) has them.
  store_.still_read(embed_.data, size_t(embedding_bytes()));
  // The matrices as the kernels run them (model/weight_prep.h): block types repacked, float
  // weights quantized when --quantization asks; the converted copies replace the mapping.
  WeightPrep prep(opts.quantization, c.n_layers, [this](const void* p, size_t n) { store_.release(p, n); },
                  opts.verbose);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(layer_base_ + l) + ".";
    prep.add(&L.wq, WeightRole::kAttnQ, l, H, p + "self_attn.q_proj.weight");
    prep.add(&L.wk, WeightRole::kAttnK, l, H, p + "self_attn.k_proj.weight");
    prep.add(&L.wv, WeightRole::kAttnV, l, H, p + "self_attn.v_proj.weight");
    prep.add(&L.wo, WeightRole::kAttnO, l, c.n_heads * hd, p + "self_attn.o_proj.weight");
    prep.add(&L.gate, WeightRole::kMlpGate, l, H, p + "mlp.gate_proj.weight");
    prep.add(&L.up, WeightRole::kMlpUp, l, H, p + "mlp.up_proj.weight");
    prep.add(&L.down, WeightRole::kMlpDown, l, c.ffn, p + "mlp.down_proj.weight");
    if (L.moe) L.moe->add_weights(prep, l, p);
    if (L.mla) L.mla->add_weights(prep, l, p);
  }
  prep.add(&lm_head_, WeightRole::kLmHead, -1, H, own_head ? head_name : embed_name);
  if (nextn_) prep.add(&eh_proj_, WeightRole::kAttnQ, 0, 2 * H, "model.layers." + std::to_string(layer_base_) + ".eh_proj.weight");
  if (vision_) vision_->add_weights(prep);
  prep.run();
  converted_ = prep.take_region();
  for (Layer& L : layers_)
    if (L.mla) L.mla->weights_ready();
  // Only the tensors this model runs count: the main model leaves out the checkpoint's
  // multi-token-prediction layers, a NEXTN model everything but its layer (and the embedding).
  auto runs = [&](const std::string& n) {
    const std::string layers = "model.layers.";
    if (n.rfind(layers, 0) != 0) return !nextn_ || n == embed_name || (own_head && n == head_name);
    const int64_t idx = std::atoll(n.c_str() + layers.size());
    return nextn_ ? idx == layer_base_ : idx < c.n_layers;
  };
  for (auto& [n, t] : store_.all()) {
    if (!runs(n)) continue;
    const auto it = prep.converted().find(n);
    // An fp8 checkpoint's matrices run as bf16 unless quantized (WeightPrep).
    const DType stored = t.dtype == DType::F8_E4M3 ? DType::BF16 : t.dtype;
    const DType as_run = it == prep.converted().end() ? stored : it->second;
    weight_bytes_ += dtype_row_bytes(as_run, t.numel());
    quantized_ = quantized_ || dtype_is_quantized(as_run);
    weight_params_ += t.numel();
  }
}

// Llama4TextL2Norm: x / sqrt(mean(x^2) + eps), an RMSNorm without weights.
static void l2_normalize(float* x, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const auto inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

template <class T>
static void grow(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}

KVElem Model::mla_expanded(const KVPool& kv) const {
  return kv.config().elem == KVElem::kF32 ? mla_expanded_elem_ : KVElem::kBF16;
}

void Model::mla_attention(Team& t, const Layer& L, int64_t li, const ForwardBatch& b, KVPool& kv) {
  const int64_t T = b.n_tokens(), H = cfg_.hidden;
  phase_end(t, StepPhase::kRest);
  L.mla->forward(t, mla_scratch_, xn_.data(), T, b.seqs, rope_cs_.data(), kv, li, o_.data(), mla_path_,
                 mla_expanded(kv));
  if (par_.attn.size > 1) {
    if (t.leader()) comm_->attn_allreduce(o_.data(), T * H);
    t.barrier();
  }
  phase_end(t, StepPhase::kAttention);
  add_inplace(t, x_.data(), o_.data(), T * H);
}

void Model::attention(Team& t, const Layer& L, int64_t li, const ForwardBatch& b, KVPool& kv) {
  if (L.mla) return mla_attention(t, L, li, b, kv);
  const auto& c = cfg_;
  const int64_t T = b.n_tokens(), H = c.hidden, hd = c.head_dim;
  const int64_t nh = n_heads_local_, nkv = n_kv_local_;
  const int64_t qd = nh * hd, kd = nkv * hd;
  // q, k and v in one pass over the activations.
  const MatmulOut qkv[3] = {{L.wq, L.bq.empty() ? nullptr : L.bq.data(), q_.data(), qd},
                            {L.wk, L.bk.empty() ? nullptr : L.bk.data(), k_.data(), kd},
                            {L.wv, L.bv.empty() ? nullptr : L.bv.data(), v_.data(), kd}};
  phase_end(t, StepPhase::kRest);
  matmul_multi(t, xn_.data(), T, H, qkv, 3);
  if (!lora_attn_rows_.empty()) {
    const LoraOut outs[3] = {{kLoraQ, q_.data(), qd}, {kLoraK, k_.data(), kd}, {kLoraV, v_.data(), kd}};
    lora_apply(t, li, lora_attn_rows_, xn_.data(), H, outs, 3);
  }
  phase_end(t, StepPhase::kQkv);
  if (c.qk_norm_whole) qk_norm_whole(t, L, T);
  // Per head of every token: q/k norm (Qwen3), RoPE, and K/V into the cache at its position.
  const int64_t ps = kv.page_size();
  const float eps = float(c.rms_eps);
  const int64_t per_row = nh + 2 * nkv;
  const bool sliding = c.layer_is_sliding(li);
  const RopeTable& rt = sliding && rope_local_ ? *rope_local_ : *rope_;
  // < hd: the rest of each head passes unrotated (partial rotary); 0: none of it (SmolLM3's NoPE layers)
  const int64_t rd = c.layer_has_rope(li) ? rt.dim() : 0;
  // Llama 4: the rotated layers' q and k normalised after RoPE; the query temperature on its NoPE layers only.
  const bool l2_norm = c.qk_l2_norm && rd > 0;
  const bool q_temp = c.q_temp_beta > 0 && (!c.q_temp_nope_only || !c.layer_has_rope(li));
  const Range r = t.share(T * per_row);
  for (int64_t item = r.begin; item < r.end; ++item) {
    const int64_t row = item / per_row, h = item % per_row;
    const float* cs = b.mrope_pos.empty() ? rt.row(row_pos_[size_t(row)]) : &mrope_cs_[size_t(row * hd)];
    if (h < nh) {
      float* qh = &q_[row * qd + h * hd];
      if (c.qk_norm) rmsnorm(qh, L.q_norm.data(), qh, 1, hd, eps);
      if (rd > 0) rope(qh, 1, hd, rd, cs, cs + rd / 2, c.rope_interleaved);
      if (l2_norm) l2_normalize(qh, hd, eps);
      if (q_temp) {
        const double p = double(row_pos_[size_t(row)]) + c.q_temp_offset;
        const auto f = float(1.0 + c.q_temp_beta * std::log1p(std::floor(p / c.q_temp_period)));
        for (int64_t i = 0; i < hd; ++i) qh[i] *= f;
      }
      continue;
    }
    const int64_t pos = row_pos_[size_t(row)];
    const int32_t page = page_of_row_[size_t(row)];
    if (h < nh + nkv) {
      const int64_t kh = h - nh;
      float* k = &k_[row * kd + kh * hd];
      if (c.qk_norm) rmsnorm(k, L.k_norm.data(), k, 1, hd, eps);
      if (rd > 0) rope(k, 1, hd, rd, cs, cs + rd / 2, c.rope_interleaved);
      if (l2_norm) l2_normalize(k, hd, eps);
      kv.write_k(li, page, kh, pos % ps, k);
    } else {
      const int64_t vh = h - nh - nkv;
      kv.write_v(li, page, vh, pos % ps, &v_[row * kd + vh * hd]);
    }
  }
  t.barrier();
  const double scale = c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(double(hd));
  AttnParams ap{nh, nkv, hd, float(scale), sliding ? c.sliding_window : 0, c.attn_softcap};
  ap.chunked = c.attn_chunked;
  if (!L.sinks.empty()) ap.sinks = L.sinks.data();
  paged_attention(t, q_.data(), qd, b.seqs.data(), int64_t(b.seqs.size()), kv.layer(li), ap, attn_.data(), qd);
  phase_end(t, StepPhase::kAttention);
  const float* bo = L.bo.empty() ? nullptr : L.bo.data();
  if (par_.attn.size > 1 || !L.post_attn_norm.empty() || c.residual_scale != 1.0) {
    matmul(t, attn_.data(), T, qd, L.wo, bo, o_.data(), H);
    if (!lora_attn_rows_.empty()) {  // this rank's columns of A: a partial sum, like wo's
      const LoraOut out{kLoraO, o_.data(), H};
      lora_apply(t, li, lora_attn_rows_, attn_.data(), qd, &out, 1);
    }
    if (par_.attn.size > 1) {
      if (t.leader()) comm_->attn_allreduce(o_.data(), T * H);
      t.barrier();
    }
    phase_end(t, StepPhase::kOProj);
    // Gemma normalises the whole sum, so after the ranks' partial sums are added.
    if (!L.post_attn_norm.empty()) rmsnorm(t, o_.data(), L.post_attn_norm.data(), o_.data(), T, H, float(c.rms_eps));
    add_residual(t, o_.data(), T);
    return;
  }
  // One rank: o_proj adds straight into the residual stream.
  MatmulJob o;
  o.x = attn_.data();
  o.ldx = qd;
  o.M = T;
  o.w = L.wo;
  o.bias = bo;
  o.y = x_.data();
  o.ldy = H;
  o.store = MatmulStore::Add;
  matmul_jobs(t, &o, 1);
  if (!lora_attn_rows_.empty()) {
    const LoraOut out{kLoraO, x_.data(), H};
    lora_apply(t, li, lora_attn_rows_, attn_.data(), qd, &out, 1);
  }
  phase_end(t, StepPhase::kOProj);
}

void Model::mlp(Team& t, const Layer& L, int64_t li, int64_t T) {
  const int64_t H = cfg_.hidden;
  // DP attention: the MLP runs over every group's rows (gathered), then each group takes its rows back.
  const bool dp = comm_ && comm_->dp_gather_enabled();
  if (dp) {
    if (t.leader()) {
      mlp_rows_ = comm_->dp_gather(xn_.data(), T, H, global_in_);
      grow(o_, mlp_rows_ * H);
      if (L.moe) {
        L.moe->reserve(moe_scratch_, mlp_rows_);
        skip_.resize(size_t(mlp_rows_));
        for (int64_t r = 0; r < mlp_rows_; ++r) skip_[size_t(r)] = comm_->dp_is_padding(r);
      } else {
        grow(h_, mlp_rows_ * ffn_local_);
      }
    }
    t.barrier();
  } else {
    mlp_rows_ = T;
  }
  const float* in = dp ? global_in_.data() : xn_.data();
  const int64_t rows = mlp_rows_;
  // Alone (no TP, no DP attention, no norm after the MLP) the output goes straight into the residual stream.
  const bool direct = !dp && par_.mlp.size == 1 && L.post_mlp_norm.empty() && cfg_.residual_scale == 1.0;
  const float eps = float(cfg_.rms_eps);
  phase_end(t, StepPhase::kRest);
  if (L.moe) {
    L.moe->forward(t, moe_scratch_, in, rows, direct ? x_.data() : o_.data(), direct, dp ? skip_.data() : nullptr);
  } else {
    const int64_t F = ffn_local_;
    MatmulJob gu;  // h = silu(x gate^T) * (x up^T)
    gu.x = in;
    gu.ldx = H;
    gu.M = rows;
    gu.w = L.gate;
    gu.w_up = L.up;
    gu.gate_act = cfg_.mlp_act;
    gu.y = h_.data();
    gu.ldy = F;
    // Rows whose adapter changes gate or up get the unfused form (lora_gate_up): the fused pass
    // runs over the other rows only, so adapter rows do not pay for the gated matmul twice.
    std::vector<LoraRows> lora_gu;
    std::vector<int32_t> base_rows;
    if (!lora_mlp_rows_.empty()) {
      lora_gu = lora_gate_up_rows(li);
      if (!lora_gu.empty()) {
        std::vector<uint8_t> adapted(size_t(rows), 0);
        for (const auto& g : lora_gu)
          for (int32_t r : g.rows) adapted[size_t(r)] = 1;
        for (int64_t r = 0; r < rows; ++r)
          if (!adapted[size_t(r)]) base_rows.push_back(int32_t(r));
        gu.M = int64_t(base_rows.size());
        gu.rows = gu.out_rows = base_rows.data();
      }
    }
    if (gu.M > 0) matmul_jobs(t, &gu, 1);
    if (!lora_gu.empty()) lora_gate_up(t, li, in, L, lora_gu);
    phase_end(t, StepPhase::kGateUp);
    MatmulJob down;
    down.x = h_.data();
    down.ldx = F;
    down.M = rows;
    down.w = L.down;
    down.y = direct ? x_.data() : o_.data();
    down.ldy = H;
    down.store = direct ? MatmulStore::Add : MatmulStore::Set;
    matmul_jobs(t, &down, 1);
    if (!lora_mlp_rows_.empty()) {  // this rank's columns of A: a partial sum, like down's
      const LoraOut out{kLoraDown, down.y, H};
      lora_apply(t, li, lora_mlp_rows_, h_.data(), F, &out, 1);
    }
  }
  const StepPhase out_phase = L.moe ? StepPhase::kExperts : StepPhase::kDown;
  if (direct) return phase_end(t, out_phase);
  float* out = o_.data();
  if (dp) {
    if (t.leader()) comm_->dp_scatter(o_, H, global_out_.data(), T);
    t.barrier();
    out = global_out_.data();
  } else if (par_.mlp.size > 1) {
    if (t.leader()) comm_->mlp_allreduce(o_.data(), T * H);
    t.barrier();
  }
  phase_end(t, out_phase);
  if (!L.post_mlp_norm.empty()) rmsnorm(t, out, L.post_mlp_norm.data(), out, T, H, eps);
  add_residual(t, out, T);
}

void Model::qk_norm_whole(Team& t, const Layer& L, int64_t T) {
  // OLMo 2, OLMoE: RMSNorm over each token's whole q (every head) and k, before RoPE. Split over attention
  // ranks, each holds some heads: the sums of squares are added up over the group first.
  const auto& c = cfg_;
  const int64_t qd = n_heads_local_ * c.head_dim, kd = n_kv_local_ * c.head_dim;
  const Range r = t.share(T);  // qk_sumsq_ holds 2 T floats (forward)
  for (int64_t row = r.begin; row < r.end; ++row) {
    double sq = 0, sk = 0;
    for (int64_t i = 0; i < qd; ++i) sq += double(q_[row * qd + i]) * q_[row * qd + i];
    for (int64_t i = 0; i < kd; ++i) sk += double(k_[row * kd + i]) * k_[row * kd + i];
    qk_sumsq_[size_t(2 * row)] = float(sq), qk_sumsq_[size_t(2 * row + 1)] = float(sk);
  }
  t.barrier();
  if (par_.attn.size > 1) {
    if (t.leader()) comm_->attn_allreduce(qk_sumsq_.data(), 2 * T);
    t.barrier();
  }
  const double eps = c.rms_eps;
  for (int64_t row = r.begin; row < r.end; ++row) {
    const float iq = float(1.0 / std::sqrt(double(qk_sumsq_[size_t(2 * row)]) / double(c.n_heads * c.head_dim) + eps));
    const float ik =
        float(1.0 / std::sqrt(double(qk_sumsq_[size_t(2 * row + 1)]) / double(c.n_kv_heads * c.head_dim) + eps));
    for (int64_t i = 0; i < qd; ++i) q_[row * qd + i] = q_[row * qd + i] * iq * L.q_norm[size_t(i)];
    for (int64_t i = 0; i < kd; ++i) k_[row * kd + i] = k_[row * kd + i] * ik * L.k_norm[size_t(i)];
  }
  t.barrier();
}

void Model::divide_logits(Team& t, float* logits, int64_t n) const {
  const float d = float(cfg_.logit_divisor);  // Granite's logits_scaling
  const Range r = t.share(n);
  for (int64_t i = r.begin; i < r.end; ++i) logits[i] /= d;
  t.barrier();
}

void Model::layer_input(Team& t, const std::vector<float>& norm, int64_t T) {
  const int64_t H = cfg_.hidden;
  if (!norm.empty()) return rmsnorm(t, x_.data(), norm.data(), xn_.data(), T, H, float(cfg_.rms_eps));
  const Range r = t.share(T);  // OLMo 2: attention and the MLP read the residual stream itself
  std::memcpy(xn_.data() + r.begin * H, x_.data() + r.begin * H, sizeof(float) * size_t((r.end - r.begin) * H));
  t.barrier();
}

void Model::add_residual(Team& t, const float* out, int64_t T) {
  const int64_t n = T * cfg_.hidden;
  if (cfg_.residual_scale == 1.0) return add_inplace(t, x_.data(), out, n);
  // Granite: x + out * residual_multiplier, the product rounded to float before the add as
  // transformers computes it in the model's dtype.
  const float m = float(cfg_.residual_scale);
  const Range r = t.share(n);
  for (int64_t i = r.begin; i < r.end; ++i) x_[size_t(i)] += out[i] * m;
  t.barrier();
}

void Model::lora_prepare(const ForwardBatch& b) {
  lora_attn_rows_.clear();
  lora_mlp_rows_.clear();
  if (loras_.empty()) {
    for (int32_t s : b.seq_lora)
      if (s >= 0) fail("LoRA adapter slot {} is not loaded (no adapters are)", s);
    return;
  }
  const int64_t T = b.n_tokens();
  DP_CHECK(b.seq_lora.empty() || b.seq_lora.size() == b.seqs.size(), "seq_lora holds {} slots for {} sequences",
           b.seq_lora.size(), b.seqs.size());
  auto add_row = [](std::vector<LoraRows>& groups, int32_t slot, int64_t row) {
    for (auto& g : groups)
      if (g.slot == slot) return g.rows.push_back(int32_t(row));
    groups.push_back({slot, {int32_t(row)}});
  };
  lora_ids_.assign(size_t(T), -1.0f);
  for (size_t i = 0; i < b.seq_lora.size(); ++i) {
    const int32_t slot = b.seq_lora[i];
    if (slot < -1 || (slot >= 0 && !lora_loaded(slot)))
      fail("LoRA adapter slot {} is not loaded ({} slots)", slot, lora_count());
    if (slot < 0) continue;
    const AttnSeq& s = b.seqs[i];
    for (int64_t r = s.q_row; r < s.q_row + s.n_q; ++r) {
      add_row(lora_attn_rows_, slot, r);
      lora_ids_[size_t(r)] = float(slot);
    }
  }
  int64_t mlp_rows = T;
  const bool dp = comm_ && comm_->dp_gather_enabled();
  if (!lora_mlp_) {
  } else if (!dp) {
    lora_mlp_rows_ = lora_attn_rows_;
  } else {
    // The MLP runs on every DP group's rows: which adapter each gathered row runs comes from its
    // group (small slot numbers are exact in float); padding rows run none. Every rank loads the
    // same adapters, so every rank takes part in this gather, adapters in its batch or not.
    mlp_rows = comm_->dp_gather(lora_ids_.data(), T, 1, lora_ids_global_);
    for (int64_t r = 0; r < mlp_rows; ++r) {
      if (comm_->dp_is_padding(r)) continue;
      const int32_t slot = int32_t(std::lround(lora_ids_global_[size_t(r)]));
      if (slot >= 0) add_row(lora_mlp_rows_, slot, r);
    }
  }
  // Scratch for x A^T: at most three outputs (q, k, v) of every row, at the largest rank.
  int64_t max_r = 0;
  for (const auto& a : loras_) max_r = std::max(max_r, a.rank);
  grow(lora_tmp_, 3 * max_r * std::max(T, mlp_rows));
  if (!lora_mlp_rows_.empty()) {
    grow(lora_g_, mlp_rows * ffn_local_);
    grow(lora_u_, mlp_rows * ffn_local_);
  }
}

void Model::lora_apply(Team& t, int64_t li, const std::vector<LoraRows>& groups, const float* x, int64_t ldx,
                       const LoraOut* outs, int n) {
  // tmp = x A^T per (group, output), then y += tmp B^T (B holds the scale); rows of different
  // groups never overlap, nor do different outputs.
  std::vector<MatmulJob> down, up;
  int64_t off = 0;
  for (const auto& g : groups) {
    const auto& layer = loras_[size_t(g.slot)].layers[size_t(li)];
    const int64_t M = int64_t(g.rows.size());
    for (int i = 0; i < n; ++i) {
      const LoraProj& p = layer[size_t(outs[i].mod)];
      if (p.r == 0) continue;
      MatmulJob a;
      a.x = x;
      a.ldx = ldx;
      a.M = M;
      a.rows = g.rows.data();
      a.w = p.A();
      a.y = lora_tmp_.data() + off;
      a.ldy = p.r;
      down.push_back(a);
      MatmulJob bj;
      bj.x = lora_tmp_.data() + off;
      bj.ldx = p.r;
      bj.M = M;
      bj.w = p.B();
      bj.y = outs[i].y;
      bj.ldy = outs[i].ldy;
      bj.out_rows = g.rows.data();
      bj.store = MatmulStore::Add;
      up.push_back(bj);
      off += M * p.r;
    }
  }
  if (down.empty()) return;
  matmul_jobs(t, down.data(), int64_t(down.size()));
  matmul_jobs(t, up.data(), int64_t(up.size()));
}

std::vector<Model::LoraRows> Model::lora_gate_up_rows(int64_t li) const {
  std::vector<LoraRows> groups;
  for (const auto& g : lora_mlp_rows_) {
    const auto& layer = loras_[size_t(g.slot)].layers[size_t(li)];
    if (layer[kLoraGate].r == 0 && layer[kLoraUp].r == 0) continue;
    groups.push_back(g);
  }
  return groups;
}

void Model::lora_gate_up(Team& t, int64_t li, const float* in, const Layer& L, const std::vector<LoraRows>& groups) {
  // The rows of `groups` skipped the fused silu(x gate^T) * (x up^T): they get the unfused form,
  // the adapters' deltas added to each half.
  const int64_t H = cfg_.hidden, F = ffn_local_;
  std::vector<MatmulJob> jobs;
  for (const auto& g : groups)
    for (int half = 0; half < 2; ++half) {
      MatmulJob j;
      j.x = in;
      j.ldx = H;
      j.M = int64_t(g.rows.size());
      j.rows = g.rows.data();
      j.w = half ? L.up : L.gate;
      j.y = half ? lora_u_.data() : lora_g_.data();
      j.ldy = F;
      j.out_rows = g.rows.data();
      jobs.push_back(j);
    }
  matmul_jobs(t, jobs.data(), int64_t(jobs.size()));
  const LoraOut outs[2] = {{kLoraGate, lora_g_.data(), F}, {kLoraUp, lora_u_.data(), F}};
  lora_apply(t, li, groups, in, H, outs, 2);
  for (const auto& g : groups) {
    const Range r = t.share(int64_t(g.rows.size()));
    for (int64_t i = r.begin; i < r.end; ++i) {
      const int64_t row = g.rows[size_t(i)];
      const float* g = &lora_g_[size_t(row * F)];
      if (cfg_.mlp_act == GateAct::GeluTanh) {
        gelu_tanh_mul(g, &lora_u_[size_t(row * F)], &h_[size_t(row * F)], F);
      } else {
        silu_mul(g, &lora_u_[size_t(row * F)], &h_[size_t(row * F)], F);
      }
    }
  }
  t.barrier();
}

void Model::forward_member(Team& t, const ForwardBatch& b, KVPool& kv, float* logits, float* hidden) {
  const auto& c = cfg_;
  const int64_t T = b.n_tokens(), H = c.hidden;
  const Range r = t.share(T);
  for (int64_t i = r.begin; i < r.end; ++i) {
    if (!b.row_embeds.empty() && b.row_embeds[i]) {
      std::memcpy(&x_[i * H], b.row_embeds[i], sizeof(float) * size_t(H));
    } else {
      weight_row_to_f32(embed_, b.tokens[i], &x_[i * H]);
      if (c.embed_scale != 1.0f)
        for (int64_t k = 0; k < H; ++k) x_[i * H + k] *= c.embed_scale;
    }
  }
  t.barrier();
  if (nextn_) {
    // x = eh_proj([enorm(embed(t)); hnorm(h)]): the token's half first, as DeepSeek-V3's MTP
    // weights were trained (its paper's figure draws them the other way round).
    const float eps = float(c.rms_eps);
    for (int64_t i = r.begin; i < r.end; ++i) {
      rmsnorm(&x_[i * H], enorm_.data(), &cat_[size_t(i * 2 * H)], 1, H, eps);
      rmsnorm(&b.prev_hidden[i * H], hnorm_.data(), &cat_[size_t(i * 2 * H + H)], 1, H, eps);
    }
    t.barrier();
    matmul(t, cat_.data(), T, 2 * H, eh_proj_, nullptr, x_.data(), H);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const Layer& L = layers_[l];
    layer_input(t, L.attn_norm, T);
    attention(t, L, l, b, kv);
    layer_input(t, L.mlp_norm, T);
    mlp(t, L, l, T);
  }
  if (const int64_t P = int64_t(b.last_hidden_rows.size()); P > 0) {
    const Range pr = t.share(P);
    for (int64_t i = pr.begin; i < pr.end; ++i)
      std::memcpy(&b.last_hidden[i * H], &x_[b.last_hidden_rows[i] * H], sizeof(float) * size_t(H));
    t.barrier();
    // After the final norm (an MTP layer's: shared_head.norm), as the released MTP weights were
    // trained to read it: SGLang, vLLM, TensorRT-LLM and llama.cpp all hand over that state.
    rmsnorm(t, b.last_hidden, final_norm_.data(), b.last_hidden, P, H, float(c.rms_eps));
  }
  // Pooling heads: the wanted rows' hidden states after the final norm (every rank of the group
  // holds the whole hidden width of its group's rows here, whatever the layout).
  if (const int64_t P = int64_t(b.hidden_rows.size()); P > 0) {
    const Range pr = t.share(P);
    for (int64_t i = pr.begin; i < pr.end; ++i)
      std::memcpy(&hidden[i * H], &x_[b.hidden_rows[i] * H], sizeof(float) * size_t(H));
    t.barrier();
    rmsnorm(t, hidden, final_norm_.data(), hidden, P, H, float(c.rms_eps));
  }
  const int64_t R = int64_t(b.logit_rows.size());
  if (R == 0) return;
  const Range rr = t.share(R);
  for (int64_t i = rr.begin; i < rr.end; ++i)
    std::memcpy(&sel_[i * H], &x_[b.logit_rows[i] * H], sizeof(float) * size_t(H));
  t.barrier();
  rmsnorm(t, sel_.data(), final_norm_.data(), sel_.data(), R, H, float(c.rms_eps));
  phase_end(t, StepPhase::kRest);
  if (par_.vocab.size == 1) {
    matmul(t, sel_.data(), R, H, lm_head_, nullptr, logits, c.vocab);
    if (c.final_softcap > 0) softcap(t, logits, R * c.vocab, c.final_softcap);
    if (c.logit_divisor != 1.0) divide_logits(t, logits, R * c.vocab);
  } else {
    matmul(t, sel_.data(), R, H, lm_head_, nullptr, logits_local_.data(), vocab_local_);
    if (c.final_softcap > 0) softcap(t, logits_local_.data(), R * vocab_local_, c.final_softcap);
    if (c.logit_divisor != 1.0) divide_logits(t, logits_local_.data(), R * vocab_local_);
    if (t.leader()) comm_->vocab_allgather(logits_local_.data(), R, vocab_local_, logits, c.vocab);
  }
  phase_end(t, StepPhase::kLmHead);
}

// A token's step reads k of a MoE layer's n routed experts: the rest, (1 - k / n) of them.
int64_t Model::unpicked_experts(bool bytes) const {
  if (cfg_.n_experts <= 0) return 0;
  const double idle = 1.0 - double(cfg_.n_experts_per_tok) / double(cfg_.n_experts);
  double sum = 0;
  for (const Layer& L : layers_)
    if (L.moe) sum += idle * double(bytes ? L.moe->routed_bytes() : L.moe->routed_params());
  return int64_t(sum);
}

int64_t Model::token_weight_bytes() const {
  int64_t mla_unread = 0;  // a quantized GGUF's rebuilt kv_b_proj, which decode's absorbed form does not read
  for (const Layer& L : layers_)
    if (L.mla) mla_unread += L.mla->decode_unread_bytes();
  return weight_bytes_ - (cfg_.tie_embeddings ? 0 : embedding_bytes()) - unpicked_experts(true) - mla_unread;
}

int64_t Model::token_weight_params() const {
  return weight_params_ - (cfg_.tie_embeddings ? 0 : embed_.rows * embed_.cols) - unpicked_experts(false);
}

int64_t Model::phase_weight_bytes(StepPhase p) const {
  if (p == StepPhase::kLmHead) return lm_head_.bytes();
  // The rest reads norm vectors and embedding rows, and a NEXTN layer's eh_proj.
  if (p == StepPhase::kRest) return nextn_ ? -1 : 0;
  int64_t sum = 0;
  for (const Layer& L : layers_) {
    switch (p) {
      case StepPhase::kQkv: sum += L.wq.bytes() + L.wk.bytes() + L.wv.bytes(); break;
      case StepPhase::kAttention:
        if (L.mla) sum += L.mla->decode_weight_bytes();
        break;
      case StepPhase::kOProj: sum += L.wo.bytes(); break;
      case StepPhase::kGateUp: sum += L.gate.bytes() + L.up.bytes(); break;
      case StepPhase::kDown: sum += L.down.bytes(); break;
      case StepPhase::kExperts:
        if (L.moe) sum += L.moe->token_bytes();
        break;
      default: break;
    }
  }
  return sum;
}

void Model::forward(const ForwardBatch& b, KVPool& kv, float* logits, float* hidden) {
  const auto& c = cfg_;
  const int64_t T = b.n_tokens(), H = c.hidden, hd = c.head_dim;
  // Everything that can fail on bad input fails here, on the step thread, before the team starts.
  for (int64_t t = 0; t < T; ++t) {
    if (!b.row_embeds.empty() && b.row_embeds[t]) continue;
    const int32_t id = b.tokens[t];
    if (id < 0 || id >= c.vocab) fail("token id {} is outside the vocabulary [0, {})", id, c.vocab);
  }
  phase_on_ = phase_clock_ && T <= phase_clock_->max_tokens();
  if (phase_on_) phase_clock_->begin();
  const int64_t qd = n_heads_local_ * hd, kd = n_kv_local_ * hd, R = int64_t(b.logit_rows.size());
  DP_CHECK(b.hidden_rows.empty() || hidden != nullptr, "hidden rows wanted but no buffer for them");
  DP_CHECK(!nextn_ || b.prev_hidden != nullptr, "a NEXTN layer's batch needs prev_hidden");
  DP_CHECK(b.last_hidden_rows.empty() || b.last_hidden != nullptr, "last hidden rows wanted but no buffer for them");
  if (nextn_) grow(cat_, 2 * T * H);
  grow(x_, T * H);
  grow(xn_, T * H);
  grow(q_, T * qd);
  grow(k_, T * kd);
  grow(v_, T * kd);
  grow(attn_, T * qd);
  grow(o_, T * H);
  grow(h_, T * ffn_local_);
  if (c.qk_norm_whole) grow(qk_sumsq_, 2 * T);
  grow(global_out_, T * H);
  bool has_mla = false;
  for (const auto& L : layers_) has_mla = has_mla || L.mla != nullptr;
  grow(sel_, R * H);
  grow(logits_local_, R * vocab_local_);
  grow(row_pos_, T);
  grow(page_of_row_, T);
  const int64_t ps = kv.page_size();
  int64_t max_pos = 0;
  for (const AttnSeq& s : b.seqs) {
    for (int64_t i = 0; i < s.n_q; ++i) {
      row_pos_[size_t(s.q_row + i)] = s.pos0 + i;
      page_of_row_[size_t(s.q_row + i)] = s.pages[(s.pos0 + i) / ps];
    }
    max_pos = std::max(max_pos, s.pos0 + s.n_q);
  }
  rope_->ensure(max_pos);  // RoPE angles depend only on positions: computed once, for every step
  if (rope_local_) rope_local_->ensure(max_pos);
  if (!b.mrope_pos.empty()) {
    // M-RoPE: frequency i rotates by the temporal, height or width position as mrope_section says.
    if (c.mrope_section.empty()) fail("internal: M-RoPE positions for a model without mrope_section");
    DP_CHECK(int64_t(b.mrope_pos.size()) == 3 * T, "mrope_pos holds {} values for {} rows", b.mrope_pos.size(), T);
    int32_t hi = 0;
    for (int32_t p : b.mrope_pos) {
      if (p < 0) fail("internal: negative M-RoPE position {}", p);
      hi = std::max(hi, p);
    }
    rope_->ensure(int64_t(hi) + 1);
    const int64_t half = hd / 2;
    std::vector<int32_t> sec(static_cast<size_t>(half));
    for (int64_t i = 0, k = 0, end = c.mrope_section[0]; i < half; ++i) {
      while (i >= end) end += c.mrope_section[size_t(++k)];
      sec[size_t(i)] = int32_t(k);
    }
    grow(mrope_cs_, T * hd);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const float* src = rope_->row(b.mrope_pos[size_t(3 * t + sec[size_t(i)])]);
        mrope_cs_[size_t(t * hd + i)] = src[i];
        mrope_cs_[size_t(t * hd + half + i)] = src[half + i];
      }
  }
  if (has_mla) {  // MlaAttention reads the angles per token of the batch
    const int64_t rd = rope_->dim();
    grow(rope_cs_, T * rd);
    for (int64_t i = 0; i < T; ++i) std::memcpy(&rope_cs_[i * rd], rope_->row(row_pos_[size_t(i)]), sizeof(float) * size_t(rd));
  }
  for (const auto& L : layers_) {
    if (L.moe) L.moe->reserve(moe_scratch_, T);
    if (L.mla) L.mla->reserve(mla_scratch_, T, b.seqs, mla_path_, mla_expanded(kv));
  }
  lora_prepare(b);
  team_->run([&](Team& t) { forward_member(t, b, kv, logits, hidden); });
  if (phase_on_) phase_clock_->end();
}

}  // namespace dpserve
