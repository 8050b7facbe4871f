#include "model/model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "kernels/ops.h"
#include "model/gguf_loader.h"
#include "model/gguf_set.h"
#include "model/llama2c.h"
#include "model/moe.h"
#include "model/weight_prep.h"

namespace fs = std::filesystem;

namespace dpserve {

struct Model::Layer {
  std::vector<float> attn_norm, mlp_norm, q_norm, k_norm;
  WeightView wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;
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

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  if (!fs::exists(path)) fail("model path {} does not exist", path);
  if (!find_gguf_model(path).empty()) {
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
  } else {
    load_llama2c(path, m->cfg_, m->store_);
  }
  m->par_ = opts.parallel;
  m->comm_ = opts.comm;
  if ((m->par_.attn.size > 1 || m->par_.mlp.size > 1 || m->par_.vocab.size > 1) && !m->comm_)
    fail("internal: a sharded model needs a communicator");
  m->init_layers(opts);
  return m;
}

KVPoolConfig Model::kv_config(int64_t n_pages, int64_t page_size) const {
  // MLA's latent row is per token, not per head: every attention rank of a group holds all of it.
  if (cfg_.mla.enabled())
    return KVPoolConfig::latent(cfg_.n_layers, cfg_.mla.kv_lora_rank, cfg_.mla.qk_rope_head_dim, page_size, n_pages);
  return KVPoolConfig{cfg_.n_layers, n_kv_local_, cfg_.head_dim, page_size, n_pages};
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
  rope_ = std::make_unique<RopeTable>(c);

  auto mat = [&](const std::string& n, int64_t r, int64_t k) { return store_.matrix(n, r, k); };
  auto slice_vec = [&](const std::string& n, int64_t full, int64_t b, int64_t len) {
    auto v = store_.vector_f32(n, full);
    return std::vector<float>(v.begin() + b, v.begin() + b + len);
  };

  const ShardSpec& ms = par_.mlp;
  bool any_dense = false;
  for (int64_t l = 0; l < c.n_layers; ++l) any_dense |= !c.layer_is_moe(l);
  if (any_dense && c.ffn % ms.size != 0)
    fail("--tp-size: intermediate_size {} cannot be split over {} ranks", c.ffn, ms.size);
  ffn_local_ = c.ffn / ms.size;
  layers_.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    L.attn_norm = store_.vector_f32(p + "input_layernorm.weight", H);
    L.mlp_norm = store_.vector_f32(p + "post_attention_layernorm.weight", H);
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
      if (c.qk_norm) {
        L.q_norm = store_.vector_f32(p + "self_attn.q_norm.weight", hd);
        L.k_norm = store_.vector_f32(p + "self_attn.k_norm.weight", hd);
      }
    }
    if (c.layer_is_moe(l)) {
      L.moe = std::make_unique<MoeLayer>(store_, c, p, par_);
    } else {
      const int64_t f0 = ms.begin(c.ffn);
      L.gate = mat(p + "mlp.gate_proj.weight", c.ffn, H).row_slice(f0, ffn_local_);
      L.up = mat(p + "mlp.up_proj.weight", c.ffn, H).row_slice(f0, ffn_local_);
      L.down = shard_cols(mat(p + "mlp.down_proj.weight", H, c.ffn), f0, ffn_local_, p + "mlp.down_proj.weight",
                          "--tp-size");
    }
  }
  final_norm_ = store_.vector_f32("model.norm.weight", H);
  embed_ = mat("model.embed_tokens.weight", c.vocab, H);
  lm_head_ = c.tie_embeddings || !store_.has("lm_head.weight") ? embed_ : mat("lm_head.weight", c.vocab, H);
  if (!c.tie_embeddings && !store_.has("lm_head.weight"))
    fail("weights: lm_head.weight is missing and tie_word_embeddings is false");
  vocab0_ = par_.vocab.begin(c.vocab);
  vocab_local_ = par_.vocab.end(c.vocab) - vocab0_;
  lm_head_ = lm_head_.row_slice(vocab0_, vocab_local_);
  // The matrices as the kernels run them (model/weight_prep.h): block types repacked, float
  // weights quantized when --quantization asks; the converted copies replace the mapping.
  WeightPrep prep(opts.quantization, c.n_layers, [this](const void* p, size_t n) { store_.release(p, n); },
                  opts.verbose);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    prep.add(&L.wq, WeightRole::kAttnQ, l, H, p + "self_attn.q_proj.weight");
    prep.add(&L.wk, WeightRole::kAttnK, l, H, p + "self_attn.k_proj.weight");
    prep.add(&L.wv, WeightRole::kAttnV, l, H, p + "self_attn.v_proj.weight");
    prep.add(&L.wo, WeightRole::kAttnO, l, c.n_heads * hd, p + "self_attn.o_proj.weight");
    prep.add(&L.gate, WeightRole::kMlpGate, l, H, p + "mlp.gate_proj.weight");
    prep.add(&L.up, WeightRole::kMlpUp, l, H, p + "mlp.up_proj.weight");
    prep.add(&L.down, WeightRole::kMlpDown, l, c.ffn, p + "mlp.down_proj.weight");
    if (L.moe) L.moe->add_weights(prep, l, p);
  }
  prep.add(&lm_head_, WeightRole::kLmHead, -1, H, store_.has("lm_head.weight") && !c.tie_embeddings
                                                       ? "lm_head.weight" : "model.embed_tokens.weight");
  prep.run();
  converted_ = prep.take_buffers();
  for (auto& [n, t] : store_.all()) {
    const auto it = prep.converted().find(n);
    weight_bytes_ += dtype_row_bytes(it == prep.converted().end() ? t.dtype : it->second, t.numel());
    weight_params_ += t.numel();
  }
}

static void grow(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}

void Model::mla_attention(const Layer& L, int64_t li, const ForwardBatch& b, KVPool& kv) {
  const int64_t T = b.n_tokens(), H = cfg_.hidden;
  grow(o_, T * H);
  L.mla->forward(xn_.data(), T, b.seqs, rope_cs_.data(), kv, li, o_.data(), mla_path_);
  if (par_.attn.size > 1) comm_->attn_allreduce(o_.data(), T * H);
  add_inplace(x_.data(), o_.data(), T * H);
}

void Model::attention(const Layer& L, int64_t li, const ForwardBatch& b, KVPool& kv) {
  if (L.mla) return mla_attention(L, li, b, kv);
  const auto& c = cfg_;
  const int64_t T = b.n_tokens(), H = c.hidden, hd = c.head_dim;
  const int64_t qd = n_heads_local_ * hd, kd = n_kv_local_ * hd;
  grow(q_, T * qd);
  grow(k_, T * kd);
  grow(v_, T * kd);
  grow(attn_, T * qd);
  // q, k and v in one pass over the activations (one parallel region instead of three).
  const MatmulOut qkv[3] = {{L.wq, L.bq.empty() ? nullptr : L.bq.data(), q_.data(), qd},
                            {L.wk, L.bk.empty() ? nullptr : L.bk.data(), k_.data(), kd},
                            {L.wv, L.bv.empty() ? nullptr : L.bv.data(), v_.data(), kd}};
  matmul_multi(xn_.data(), T, H, qkv, 3);
  if (c.qk_norm) {
    rmsnorm(q_.data(), L.q_norm.data(), q_.data(), T * n_heads_local_, hd, float(c.rms_eps));
    rmsnorm(k_.data(), L.k_norm.data(), k_.data(), T * n_kv_local_, hd, float(c.rms_eps));
  }
  // RoPE, then store K and V at each token's position.
  const int64_t half = hd / 2;
  const int64_t ps = kv.page_size();
  for (const AttnSeq& s : b.seqs) {
#pragma omp parallel for schedule(static) if (s.n_q > 8)
    for (int64_t i = 0; i < s.n_q; ++i) {
      const int64_t row = s.q_row + i, pos = s.pos0 + i;
      const float* cs = &rope_cs_[row * hd];  // filled once per forward, shared by every layer
      rope(&q_[row * qd], n_heads_local_, hd, hd, cs, cs + half, c.rope_interleaved);
      rope(&k_[row * kd], n_kv_local_, hd, hd, cs, cs + half, c.rope_interleaved);
      const int32_t page = s.pages[pos / ps];
      for (int64_t h = 0; h < n_kv_local_; ++h) {
        std::memcpy(kv.k_at(li, page, h, pos % ps), &k_[row * kd + h * hd], size_t(hd) * sizeof(float));
        std::memcpy(kv.v_at(li, page, h, pos % ps), &v_[row * kd + h * hd], size_t(hd) * sizeof(float));
      }
    }
  }
  AttnParams ap{n_heads_local_, n_kv_local_, hd, float(1.0 / std::sqrt(double(hd))), c.sliding_window};
  paged_attention(q_.data(), qd, b.seqs.data(), int64_t(b.seqs.size()), kv.layer(li), ap, attn_.data(), qd);
  grow(o_, T * H);
  matmul(attn_.data(), T, qd, L.wo, nullptr, o_.data(), H);
  if (par_.attn.size > 1) comm_->attn_allreduce(o_.data(), T * H);
  add_inplace(x_.data(), o_.data(), T * H);
}

void Model::mlp(const Layer& L, int64_t T) {
  const int64_t H = cfg_.hidden;
  // DP attention: the MLP runs over every group's rows (gathered), then each group takes its rows back.
  const bool dp = comm_ && comm_->dp_gather_enabled();
  const float* in = xn_.data();
  int64_t rows = T;
  if (dp) {
    rows = comm_->dp_gather(xn_.data(), T, H, global_in_);
    in = global_in_.data();
  }
  grow(o_, rows * H);
  if (L.moe) {
    std::vector<uint8_t> skip;
    if (dp) {
      skip.resize(size_t(rows));
      for (int64_t r = 0; r < rows; ++r) skip[size_t(r)] = comm_->dp_is_padding(r);
    }
    L.moe->forward(in, rows, o_.data(), skip.empty() ? nullptr : skip.data());
  } else if (rows > 0) {
    const int64_t F = ffn_local_;
    grow(gate_, rows * F);
    grow(up_, rows * F);
    const MatmulOut gate_up[2] = {{L.gate, nullptr, gate_.data(), F}, {L.up, nullptr, up_.data(), F}};
    matmul_multi(in, rows, H, gate_up, 2);
    silu_mul(gate_.data(), up_.data(), gate_.data(), rows * F);
    matmul(gate_.data(), rows, F, L.down, nullptr, o_.data(), H);
  }
  if (dp) {
    grow(global_out_, T * H);
    comm_->dp_scatter(o_, H, global_out_.data(), T);
    add_inplace(x_.data(), global_out_.data(), T * H);
    return;
  }
  if (par_.mlp.size > 1) comm_->mlp_allreduce(o_.data(), T * H);
  add_inplace(x_.data(), o_.data(), T * H);
}

void Model::forward(const ForwardBatch& b, KVPool& kv, float* logits) {
  const auto& c = cfg_;
  const int64_t T = b.n_tokens(), H = c.hidden;
  grow(x_, T * H);
  grow(xn_, T * H);
  for (int64_t t = 0; t < T; ++t) {
    if (!b.row_embeds.empty() && b.row_embeds[t]) {
      std::memcpy(&x_[t * H], b.row_embeds[t], sizeof(float) * size_t(H));
      continue;
    }
    const int32_t id = b.tokens[t];
    if (id < 0 || id >= c.vocab) fail("token id {} is outside the vocabulary [0, {})", id, c.vocab);
    weight_row_to_f32(embed_, id, &x_[t * H]);
  }
  // RoPE angles depend only on positions: compute them once for all layers.
  const int64_t hd = rope_->dim(), half = hd / 2;
  grow(rope_cs_, T * hd);
  for (const AttnSeq& s : b.seqs)
    for (int64_t i = 0; i < s.n_q; ++i) rope_->at(s.pos0 + i, &rope_cs_[(s.q_row + i) * hd], &rope_cs_[(s.q_row + i) * hd + half]);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const Layer& L = layers_[l];
    rmsnorm(x_.data(), L.attn_norm.data(), xn_.data(), T, H, float(c.rms_eps));
    attention(L, l, b, kv);
    rmsnorm(x_.data(), L.mlp_norm.data(), xn_.data(), T, H, float(c.rms_eps));
    mlp(L, T);
  }
  const int64_t R = int64_t(b.logit_rows.size());
  if (R == 0) return;
  grow(sel_, R * H);
  for (int64_t r = 0; r < R; ++r)
    rmsnorm(&x_[b.logit_rows[r] * H], final_norm_.data(), &sel_[r * H], 1, H, float(c.rms_eps));
  if (par_.vocab.size == 1) {
    matmul(sel_.data(), R, H, lm_head_, nullptr, logits, c.vocab);
  } else {
    grow(logits_local_, R * vocab_local_);
    matmul(sel_.data(), R, H, lm_head_, nullptr, logits_local_.data(), vocab_local_);
    comm_->vocab_allgather(logits_local_.data(), R, vocab_local_, logits, c.vocab);
  }
}

}  // namespace dpserve
