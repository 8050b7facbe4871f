// Multi-head latent attention (DeepSeek-V2/V3) of one layer, for this rank's heads.
//
// Per token: q = q_proj(x) (or q_b_proj(rmsnorm(q_a_proj(x)))), split per head into q_nope and
// q_pe; [c_kv | k_pe] = kv_a_proj_with_mqa(x); c_kv is RMS-normalised (kv_a_layernorm) and k_pe
// rotated; that row is the token's whole KV cache entry (KVKind::kLatent), shared by all heads.
// kv_b_proj maps c_kv to every head's k_nope (W_UK) and value (W_UV). RoPE rotates adjacent pairs
// of q_pe / k_pe: DeepSeek's reference de-interleaves both before a half rotation, a permutation
// that leaves q_pe . k_pe equal to the pairwise rotation's.
//
// Two equal forms of the same attention, chosen per sequence by arithmetic cost:
//  * absorbed (decode): q_nope is projected into the latent space (W_UK^T q_nope), attention runs
//    over the cached rows directly as one shared KV head (key [c_kv | k_pe], value c_kv), and each
//    head's latent output is mapped back by W_UV. Reads each cached row once for all heads.
//  * decompressed (prefill): k_nope and v of every cached position are rebuilt with kv_b_proj and
//    ordinary multi-head attention runs on them.
// Softmax scale: (qk_nope + qk_rope)^-1/2, times mscale(factor, mscale_all_dim)^2 under YaRN.
#pragma once

#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kv/kv_pool.h"
#include "model/config.h"
#include "model/parallel.h"
#include "model/weight_store.h"

namespace dpserve {

class WeightPrep;

enum class MlaPath { kAuto, kAbsorbed, kDecompressed };

// The step scratch of a rank's MLA layers (queries, latents, and the decompressed keys and values of
// a long prefill). Layers run one after another, so they share one (the model owns it) instead of
// each keeping its own: the decompressed form's keys and values alone are ~1.2 GB a layer for a
// 32k-token prompt on DeepSeek-V2-Lite's shape, 27 layers of them. Those are fp32 (ks, vs) where
// the cache is fp32 by request or by fp32 weights, else bf16 (ks16, vs16: half the bytes, and
// attention on the bf16 level; kv/kv_dtype.h resolve_mla_expanded_elem).
struct MlaScratch {
  std::vector<float> q, qa, ckv, attn, gq, qabs, olat, oabs, lat, kvd, ks, vs;
  std::vector<bf16_t> ks16, vs16;
};

class MlaAttention {
 public:
  // `prefix`: "model.layers.N."; heads are split over `attn` (the DP group's attention ranks).
  MlaAttention(const WeightStore& store, const ModelConfig& c, const std::string& prefix, const ShardSpec& attn);

  // xn: the normalised hidden states [T, hidden] of the batch's tokens (rows laid out as `seqs`
  // says); rope_cs: per row, rope_dim/2 cos then rope_dim/2 sin. Writes every token's latent row
  // to layer `layer` of `kv` and this rank's heads' share of o_proj to out[T, hidden] (the caller
  // sums it over the attention ranks). Collective over the team (every member calls it with the
  // same arguments; returns after a barrier): products split as the matmul kernels split them,
  // the absorbed form's per-head chain by heads, so every value is the same for any team size.
  // `expanded`: what the decompressed form holds its per-head keys and values in (fp32 or bf16;
  // Model::mla_expanded), as reserve() was told.
  void forward(Team& t, MlaScratch& sc, const float* xn, int64_t T, const std::vector<AttnSeq>& seqs,
               const float* rope_cs, KVPool& kv, int64_t layer, float* out, MlaPath path = MlaPath::kAuto,
               KVElem expanded = KVElem::kF32) const;

  // Registers the projections for conversion at load (model/weight_prep.h): q, kv_a and o as
  // attention weights (quantized when --quantization asks), kv_b_proj only repacked or copied (its
  // transposed copy for the absorbed form keeps the stored values). weights_ready() after the
  // conversion points the per-head views at the converted kv_b_proj.
  void add_weights(WeightPrep& prep, int64_t layer, const std::string& prefix);
  void weights_ready();
  // Bytes of this layer's weights a decode step (the absorbed form) does not read: the fp32
  // kv_b_proj rebuilt for prefill where the quantized parts stand in for it, else 0.
  int64_t decode_unread_bytes() const;
  // Bytes of this layer's weights one decode step (the absorbed form) reads on this rank: the
  // q / kv_a / o projections and every local head's W_UK^T and W_UV.
  int64_t decode_weight_bytes() const;

  // Grows `sc` to hold this layer's scratch for a batch whose decompressed keys and values are held
  // in `expanded` (before the collective forward; not thread-safe).
  void reserve(MlaScratch& sc, int64_t T, const std::vector<AttnSeq>& seqs, MlaPath path = MlaPath::kAuto,
               KVElem expanded = KVElem::kF32) const;

  // Which form the cost model picks for n_q queries over n_keys positions.
  MlaPath choose(int64_t n_q, int64_t n_keys) const;

 private:
  MlaPath pick(const AttnSeq& s, MlaPath forced) const;
  void absorbed(Team& t, MlaScratch& sc, const std::vector<int64_t>& which, const std::vector<AttnSeq>& seqs, KVPool& kv,
                int64_t layer) const;
  void decompressed(Team& t, MlaScratch& sc, const AttnSeq& s, KVPool& kv, int64_t layer, KVElem expanded) const;

  MlaConfig m_;
  int64_t hidden_ = 0, heads_ = 0;  // heads_: this rank's
  int64_t o_proj_full_cols_ = 0;
  float eps_ = 1e-6f, scale_ = 1.0f;
  WeightView q_proj_, q_a_, q_b_, kv_a_, kv_b_, o_proj_;
  std::vector<float> q_a_norm_, kv_a_norm_;
  std::vector<WeightView> uk_t_;   // per local head: W_UK^T [kv_lora_rank, qk_nope] (a transposed copy)
  std::vector<WeightView> uv_;     // per local head: W_UV [v_head_dim, kv_lora_rank] (a view)
  std::vector<uint8_t> uk_t_data_;
  // A GGUF's block-quantized attn_k_b / attn_v_b as stored (this rank's heads), where present: the
  // absorbed form's uk_t_ / uv_ are views of these instead (model/gguf_loader.cpp).
  WeightView w_uk_t_, w_uv_;
  // A block-quantized attn_kv_b (older GGUFs): every local head's W_UK^T decoded and requantized
  // to Q8_0 at load (joined_uk_t_q8); uk_t_ are row slices of it.
  WeightView uk_t_q8_;
  void joined_uk_t_q8(int64_t r, int64_t nope, int64_t kvw);
};

}  // namespace dpserve
