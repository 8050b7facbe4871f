#include "model/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/dequant.h"
#include "kernels/ops.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"
#include "kv/kv_codec.h"
#include "model/weight_prep.h"

namespace dpserve {

namespace {

void grow(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}

}  // namespace

MlaAttention::MlaAttention(const WeightStore& store, const ModelConfig& c, const std::string& prefix,
                           const ShardSpec& attn)
    : m_(c.mla), hidden_(c.hidden), eps_(float(c.rms_eps)) {
  const int64_t H = c.n_heads, qd = m_.q_head_dim(), r = m_.kv_lora_rank, rd = m_.qk_rope_head_dim;
  const int64_t nope = m_.qk_nope_head_dim, vd = m_.v_head_dim, kvw = nope + vd;
  if (H % attn.size != 0) fail("--tp-size: {} attention heads cannot be split over {} ranks", H, attn.size);
  heads_ = H / attn.size;
  const int64_t h0 = attn.rank * heads_;
  const std::string a = prefix + "self_attn.";
  if (m_.q_lora_rank > 0) {
    q_a_ = store.matrix(a + "q_a_proj.weight", m_.q_lora_rank, hidden_);
    q_a_norm_ = store.vector_f32(a + "q_a_layernorm.weight", m_.q_lora_rank);
    q_b_ = store.matrix(a + "q_b_proj.weight", H * qd, m_.q_lora_rank).row_slice(h0 * qd, heads_ * qd);
  } else {
    q_proj_ = store.matrix(a + "q_proj.weight", H * qd, hidden_).row_slice(h0 * qd, heads_ * qd);
  }
  kv_a_ = store.matrix(a + "kv_a_proj_with_mqa.weight", r + rd, hidden_);
  kv_a_norm_ = store.vector_f32(a + "kv_a_layernorm.weight", r);
  kv_b_ = store.matrix(a + "kv_b_proj.weight", H * kvw, r).row_slice(h0 * kvw, heads_ * kvw);
  o_proj_ = shard_cols(store.matrix(a + "o_proj.weight", hidden_, H * vd), h0 * vd, heads_ * vd, a + "o_proj.weight",
                       "--tp-size (with --dp-size)");
  o_proj_full_cols_ = H * vd;

  double scale = 1.0 / std::sqrt(double(qd));
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == RopeScaling::Type::Yarn && rs.mscale_all_dim != 0) {
    const double m = yarn_mscale(rs.factor, rs.mscale_all_dim);
    scale *= m * m;
  }
  scale_ = float(scale);

  // A GGUF's quantized split parts (model/gguf_loader.cpp keeps them where each head's rows start
  // a row group): W_UK^T and W_UV of each head are row slices of them as stored.
  if (store.has(a + "w_uk_t.weight")) {
    w_uk_t_ = store.matrix(a + "w_uk_t.weight", H * r, nope).row_slice(h0 * r, heads_ * r);
    w_uv_ = store.matrix(a + "w_uv.weight", H * vd, r).row_slice(h0 * vd, heads_ * vd);
    for (int64_t h = 0; h < heads_; ++h) {
      uk_t_.push_back(w_uk_t_.row_slice(h * r, r));
      uv_.push_back(w_uv_.row_slice(h * vd, vd));
    }
    return;  // the last part of construction: nothing below applies
  }
  // W_UK^T of each local head, [r, nope], for projecting q_nope into the latent space. Float
  // weights are transposed exactly in their own type; block-quantized ones are requantized to Q8_0
  // (joined_uk_t_q8; decoded to fp32 where the shapes do not fall on its blocks), an fp8
  // checkpoint's to the bf16 values it runs as.
  const DType src = kv_b_.dtype;
  // Q8_0 blocks along qk_nope; each head's rows starting a row group of its repacked form.
  if (dtype_is_quantized(src) && nope % dtype_block_elems(DType::Q8_0) == 0 &&
      r % interleave_group_rows(DType::Q8_0) == 0) {
    joined_uk_t_q8(r, nope, kvw);
    return;
  }
  const bool fp8 = src == DType::F8_E4M3;
  const DType dt = dtype_is_quantized(src) ? DType::F32 : fp8 ? DType::BF16 : src;
  const size_t es = dtype_size(dt);
  uk_t_data_.resize(size_t(heads_ * r * nope) * es);
  std::vector<float> row(static_cast<size_t>(r));
  for (int64_t h = 0; h < heads_; ++h) {
    uint8_t* dst = uk_t_data_.data() + size_t(h * r * nope) * es;
    for (int64_t n = 0; n < nope; ++n) {
      const int64_t src_row = h * kvw + n;
      const char* sp = static_cast<const char*>(kv_b_.data) + src_row * dtype_row_bytes(src, kv_b_.ld);
      if (dt == DType::F32) {
        dequantize_row(src, sp, row.data(), r);
        for (int64_t k = 0; k < r; ++k) std::memcpy(dst + size_t(k * nope + n) * es, &row[size_t(k)], es);
      } else if (fp8) {
        weight_row_to_f32(kv_b_, src_row, row.data());
        for (int64_t k = 0; k < r; ++k) {
          const bf16_t b = f32_to_bf16(row[size_t(k)]);
          std::memcpy(dst + size_t(k * nope + n) * es, &b, es);
        }
      } else {
        for (int64_t k = 0; k < r; ++k) std::memcpy(dst + size_t(k * nope + n) * es, sp + size_t(k) * es, es);
      }
    }
    uk_t_.push_back(WeightView{dst, dt, r, nope, nope});
    uv_.push_back(kv_b_.row_slice(h * kvw + nope, vd));
  }
}

void MlaAttention::joined_uk_t_q8(int64_t r, int64_t nope, int64_t kvw) {
  // A block-quantized attn_kv_b (older GGUFs) holds W_UK with its blocks along kv_lora_rank, the
  // wrong axis for W_UK^T. Decoded to fp32 it streamed 3.8x the bytes of Q8_0 on every decode step
  // (a fifth of a DeepSeek-V2-Lite-like Q4_K_M step was attention); so each head's transpose is
  // decoded and quantized again, to Q8_0 along qk_nope: one more rounding of at most half a step
  // of 1/127 of its block's largest value, on top of the file's own, the product then quantizing
  // q_nope as every block-quantized product does (as the split attn_k_b of newer files are run).
  const DType src = kv_b_.dtype;
  const int64_t rb = dtype_row_bytes(DType::Q8_0, nope);
  uk_t_data_.resize(size_t(heads_ * r * rb));
  std::vector<float> row(static_cast<size_t>(r)), t(static_cast<size_t>(r * nope));
  for (int64_t h = 0; h < heads_; ++h) {
    for (int64_t n = 0; n < nope; ++n) {
      const char* sp = static_cast<const char*>(kv_b_.data) + (h * kvw + n) * dtype_row_bytes(src, kv_b_.ld);
      dequantize_row(src, sp, row.data(), r);
      for (int64_t k = 0; k < r; ++k) t[size_t(k * nope + n)] = row[size_t(k)];
    }
    for (int64_t k = 0; k < r; ++k)
      quantize_row(DType::Q8_0, &t[size_t(k * nope)], uk_t_data_.data() + size_t((h * r + k) * rb), nope);
  }
  uk_t_q8_ = WeightView{uk_t_data_.data(), DType::Q8_0, heads_ * r, nope, nope};
  for (int64_t h = 0; h < heads_; ++h) {
    uk_t_.push_back(uk_t_q8_.row_slice(h * r, r));
    uv_.push_back(kv_b_.row_slice(h * kvw + nope, m_.v_head_dim));
  }
}

void MlaAttention::add_weights(WeightPrep& prep, int64_t layer, const std::string& prefix) {
  const std::string a = prefix + "self_attn.";
  if (m_.q_lora_rank > 0) {
    prep.add(&q_a_, WeightRole::kAttnQ, layer, hidden_, a + "q_a_proj.weight");
    prep.add(&q_b_, WeightRole::kAttnQ, layer, m_.q_lora_rank, a + "q_b_proj.weight");
  } else {
    prep.add(&q_proj_, WeightRole::kAttnQ, layer, hidden_, a + "q_proj.weight");
  }
  prep.add(&kv_a_, WeightRole::kAttnK, layer, hidden_, a + "kv_a_proj_with_mqa.weight");
  prep.add(&o_proj_, WeightRole::kAttnO, layer, o_proj_full_cols_, a + "o_proj.weight");
  // Each head's W_UV is a row slice of kv_b_proj: it must start on a group of the repacked form
  // (an fp8 checkpoint's runs as bf16, converted in plain rows where the heads do not fall on groups).
  const bool fp8 = kv_b_.dtype == DType::F8_E4M3;
  const int64_t kvw = m_.qk_nope_head_dim + m_.v_head_dim;
  const int64_t G = interleave_group_rows(fp8 ? DType::BF16 : kv_b_.dtype);
  const bool groups = kvw % G == 0 && m_.qk_nope_head_dim % G == 0;
  if (groups || fp8) prep.add(&kv_b_, WeightRole::kKeep, layer, m_.kv_lora_rank, a + "kv_b_proj.weight", groups);
  if (w_uk_t_.data) {
    prep.add(&w_uk_t_, WeightRole::kKeep, layer, m_.qk_nope_head_dim, a + "w_uk_t.weight");
    prep.add(&w_uv_, WeightRole::kKeep, layer, m_.kv_lora_rank, a + "w_uv.weight");
  }
  if (uk_t_q8_.data) prep.add(&uk_t_q8_, WeightRole::kKeep, layer, m_.qk_nope_head_dim, a + "w_uk_t.weight");
}

void MlaAttention::weights_ready() {
  const int64_t r = m_.kv_lora_rank, vd = m_.v_head_dim, kvw = m_.qk_nope_head_dim + vd;
  for (int64_t h = 0; h < heads_; ++h) {
    if (w_uk_t_.data) {
      uk_t_[size_t(h)] = w_uk_t_.row_slice(h * r, r);
      uv_[size_t(h)] = w_uv_.row_slice(h * vd, vd);
    } else {
      if (uk_t_q8_.data) uk_t_[size_t(h)] = uk_t_q8_.row_slice(h * r, r);
      uv_[size_t(h)] = kv_b_.row_slice(h * kvw + m_.qk_nope_head_dim, vd);
    }
  }
  // The prepared copy replaced the requantized blocks (they were not a file mapping to drop).
  const auto* d = static_cast<const uint8_t*>(uk_t_q8_.data);
  if (d && (d < uk_t_data_.data() || d >= uk_t_data_.data() + uk_t_data_.size())) std::vector<uint8_t>().swap(uk_t_data_);
}

int64_t MlaAttention::decode_unread_bytes() const {
  return w_uk_t_.data ? kv_b_.bytes() : 0;
}

int64_t MlaAttention::decode_weight_bytes() const {
  int64_t sum = q_proj_.bytes() + q_a_.bytes() + q_b_.bytes() + kv_a_.bytes() + o_proj_.bytes();
  for (int64_t h = 0; h < heads_; ++h) sum += uk_t_[size_t(h)].bytes() + uv_[size_t(h)].bytes();
  return sum;
}

MlaPath MlaAttention::choose(int64_t n_q, int64_t n_keys) const {
  const double r = double(m_.kv_lora_rank), nope = double(m_.qk_nope_head_dim), vd = double(m_.v_head_dim);
  const double rd = double(m_.qk_rope_head_dim), q = double(n_q), k = double(n_keys);
  // Multiply-adds per head: absorbing projects each query in and out of the latent space and
  // attends over rows of r + rd (values r); decompressing rebuilds k_nope and v for every position.
  const double absorbed = q * (nope + vd) * r + q * k * (2 * r + rd);
  const double decompressed = k * (nope + vd) * r + q * k * (nope + rd + vd);
  return absorbed <= decompressed ? MlaPath::kAbsorbed : MlaPath::kDecompressed;
}

MlaPath MlaAttention::pick(const AttnSeq& s, MlaPath forced) const {
  return forced == MlaPath::kAuto ? choose(s.n_q, s.pos0 + s.n_q) : forced;
}

void MlaAttention::reserve(MlaScratch& sc, int64_t T, const std::vector<AttnSeq>& seqs, MlaPath path,
                           KVElem expanded) const {
  const int64_t qd = m_.q_head_dim(), r = m_.kv_lora_rank, rd = m_.qk_rope_head_dim;
  const int64_t vd = m_.v_head_dim, lat = r + rd, Hq = heads_ * qd, kvw = m_.qk_nope_head_dim + vd;
  int64_t Ta = 0, max_keys = 0;
  for (const AttnSeq& s : seqs) {
    if (s.n_q == 0) continue;
    if (pick(s, path) == MlaPath::kAbsorbed)
      Ta += s.n_q;
    else
      max_keys = std::max(max_keys, s.pos0 + s.n_q);
  }
  grow(sc.q, T * Hq);
  grow(sc.ckv, T * lat);
  if (m_.q_lora_rank > 0) grow(sc.qa, T * m_.q_lora_rank);
  grow(sc.attn, T * heads_ * vd);
  grow(sc.gq, Ta * Hq);
  grow(sc.qabs, Ta * heads_ * lat);
  grow(sc.olat, Ta * heads_ * r);
  grow(sc.oabs, Ta * heads_ * vd);
  grow(sc.lat, max_keys * lat);
  grow(sc.kvd, max_keys * heads_ * kvw);
  if (expanded == KVElem::kF32) {
    grow(sc.ks, heads_ * max_keys * qd);
    grow(sc.vs, heads_ * max_keys * vd);
  } else {
    if (int64_t(sc.ks16.size()) < heads_ * max_keys * qd) sc.ks16.resize(size_t(heads_ * max_keys * qd));
    if (int64_t(sc.vs16.size()) < heads_ * max_keys * vd) sc.vs16.resize(size_t(heads_ * max_keys * vd));
  }
}

void MlaAttention::forward(Team& t, MlaScratch& sc, const float* xn, int64_t T, const std::vector<AttnSeq>& seqs,
                           const float* rope_cs, KVPool& kv, int64_t layer, float* out, MlaPath path,
                           KVElem expanded) const {
  if (T == 0) return;
  const int64_t qd = m_.q_head_dim(), r = m_.kv_lora_rank, rd = m_.qk_rope_head_dim, nope = m_.qk_nope_head_dim;
  const int64_t vd = m_.v_head_dim, lat = r + rd, Hq = heads_ * qd;
  DP_CHECK(kv.config().kind == KVKind::kLatent && kv.config().latent_dim == r && kv.config().rope_dim == rd,
           "MLA needs a latent KV pool of {} + {}", r, rd);
  // Every member makes the same choices (reserve() sized the scratch for them).
  std::vector<int64_t> absorbed_seqs, decompressed_seqs;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttnSeq& s = seqs[i];
    if (s.n_q == 0) continue;
    (pick(s, path) == MlaPath::kAbsorbed ? absorbed_seqs : decompressed_seqs).push_back(int64_t(i));
  }
  // The q path and the latent from the same activations, in one pass when the weights allow it.
  const WeightView& q_in = m_.q_lora_rank > 0 ? q_a_ : q_proj_;
  float* q_in_out = m_.q_lora_rank > 0 ? sc.qa.data() : sc.q.data();
  if (q_in.dtype == kv_a_.dtype) {
    const MatmulOut two[2] = {{q_in, nullptr, q_in_out, q_in.rows}, {kv_a_, nullptr, sc.ckv.data(), lat}};
    matmul_multi(t, xn, T, hidden_, two, 2);
  } else {
    matmul(t, xn, T, hidden_, q_in, nullptr, q_in_out, q_in.rows);
    matmul(t, xn, T, hidden_, kv_a_, nullptr, sc.ckv.data(), lat);
  }
  if (m_.q_lora_rank > 0) {
    const Range rows = t.share(T);
    if (!rows.empty())
      rmsnorm(&sc.qa[rows.begin * m_.q_lora_rank], q_a_norm_.data(), &sc.qa[rows.begin * m_.q_lora_rank], rows.size(),
              m_.q_lora_rank, eps_);
    t.barrier();
    matmul(t, sc.qa.data(), T, m_.q_lora_rank, q_b_, nullptr, sc.q.data(), Hq);
  }
  // Normalise c_kv, rotate k_pe and every head's q_pe (adjacent pairs), store the latent rows:
  // each member its share of the batch's rows.
  const int64_t ps = kv.page_size();
  const Range mine = t.share(T);
  for (const AttnSeq& s : seqs) {
    const int64_t i0 = std::max(mine.begin - s.q_row, int64_t(0));
    const int64_t i1 = std::min(mine.end - s.q_row, s.n_q);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = s.q_row + i, pos = s.pos0 + i;
      float* c = &sc.ckv[row * lat];
      rmsnorm(c, kv_a_norm_.data(), c, 1, r, eps_);
      const float* cs = rope_cs + row * rd;
      rope(c + r, 1, rd, rd, cs, cs + rd / 2, true);
      rope(&sc.q[row * Hq + nope], heads_, qd, rd, cs, cs + rd / 2, true);
      kv.write_latent(layer, s.pages[pos / ps], pos % ps, c);
    }
  }
  t.barrier();
  for (int64_t i : decompressed_seqs) decompressed(t, sc, seqs[size_t(i)], kv, layer, expanded);
  if (!absorbed_seqs.empty()) absorbed(t, sc, absorbed_seqs, seqs, kv, layer);
  matmul(t, sc.attn.data(), T, heads_ * vd, o_proj_, nullptr, out, hidden_);
}

void MlaAttention::absorbed(Team& t, MlaScratch& sc, const std::vector<int64_t>& which, const std::vector<AttnSeq>& seqs,
                            KVPool& kv, int64_t layer) const {
  const int64_t qd = m_.q_head_dim(), r = m_.kv_lora_rank, rd = m_.qk_rope_head_dim, nope = m_.qk_nope_head_dim;
  const int64_t vd = m_.v_head_dim, lat = r + rd, Hq = heads_ * qd;
  // The chosen sequences' query rows, end to end.
  std::vector<AttnSeq> local;
  int64_t Ta = 0;
  for (int64_t i : which) {
    AttnSeq s = seqs[size_t(i)];
    s.q_row = Ta;
    Ta += s.n_q;
    local.push_back(s);
  }
  // Each member takes a share of the heads for the projections around attention: [W_UK^T q_nope |
  // q_pe] per head before it, the weighted latent back through W_UV after it (every head's
  // result is the same whichever member computes it and whatever heads share its calls). The
  // attention itself, every head's query against the latent rows [c_kv | k_pe] as one shared KV
  // head, runs on the whole team: a long context's keys are split into chunks over the members
  // (kernels/attention_impl.h), so each member reads its part of the latent cache once rather
  // than all of it for its own heads.
  const Range hs = t.share(heads_);
  if (!hs.empty()) {
    for (size_t i = 0; i < which.size(); ++i) {  // its heads' query columns, the chosen rows end to end
      const AttnSeq& s = seqs[size_t(which[i])];
      for (int64_t j = 0; j < s.n_q; ++j)
        std::memcpy(&sc.gq[(local[i].q_row + j) * Hq + hs.begin * qd], &sc.q[(s.q_row + j) * Hq + hs.begin * qd],
                    size_t(hs.size() * qd) * sizeof(float));
    }
    for (int64_t h = hs.begin; h < hs.end; ++h) {
      matmul(&sc.gq[h * qd], Ta, Hq, uk_t_[size_t(h)], nullptr, &sc.qabs[h * lat], heads_ * lat);
      for (int64_t i = 0; i < Ta; ++i)
        std::memcpy(&sc.qabs[(i * heads_ + h) * lat + r], &sc.gq[i * Hq + h * qd + nope], size_t(rd) * sizeof(float));
    }
  }
  t.barrier();
  const AttnParams ap{heads_, 1, lat, scale_};
  paged_attention(t, sc.qabs.data(), heads_ * lat, local.data(), int64_t(local.size()), kv.layer(layer), ap,
                  sc.olat.data(), heads_ * r);
  if (!hs.empty()) {
    for (int64_t h = hs.begin; h < hs.end; ++h)
      matmul(&sc.olat[h * r], Ta, heads_ * r, uv_[size_t(h)], nullptr, &sc.oabs[h * vd], heads_ * vd);
    for (size_t i = 0; i < which.size(); ++i) {
      const AttnSeq& s = seqs[size_t(which[i])];
      for (int64_t j = 0; j < s.n_q; ++j)
        std::memcpy(&sc.attn[(s.q_row + j) * heads_ * vd + hs.begin * vd],
                    &sc.oabs[(local[i].q_row + j) * heads_ * vd + hs.begin * vd], size_t(hs.size() * vd) * sizeof(float));
    }
  }
  t.barrier();
}

void MlaAttention::decompressed(Team& t, MlaScratch& sc, const AttnSeq& s, KVPool& kv, int64_t layer,
                                KVElem expanded) const {
  const int64_t qd = m_.q_head_dim(), r = m_.kv_lora_rank, rd = m_.qk_rope_head_dim, nope = m_.qk_nope_head_dim;
  const int64_t vd = m_.v_head_dim, lat = r + rd, Hq = heads_ * qd, kvw = nope + vd;
  const int64_t nk = s.pos0 + s.n_q, ps = kv.page_size();
  const Range js = t.share(nk);
  for (int64_t j = js.begin; j < js.end; ++j)
    kv.read_latent(layer, s.pages[j / ps], j % ps, &sc.lat[j * lat]);
  t.barrier();
  // k_nope and v of every local head at every position: kv_b_proj(c_kv).
  matmul(t, sc.lat.data(), nk, lat, kv_b_, nullptr, sc.kvd.data(), heads_ * kvw);
  // Per-head K = [k_nope | k_pe] and V, as one page of nk positions: in fp32, or rounded to bf16 as
  // a bf16 cache rounds its rows (`expanded`: what a GQA model of these weights would cache; a
  // compact latent holds less than bf16), so a long prompt's attention runs on the bf16 level's
  // products and reads half the bytes.
  const bool f32 = expanded == KVElem::kF32;
  for (int64_t j = js.begin; j < js.end; ++j)
    for (int64_t h = 0; h < heads_; ++h) {
      const float* src = &sc.kvd[(j * heads_ + h) * kvw];
      const float* pe = &sc.lat[j * lat + r];
      if (f32) {
        float* k = &sc.ks[(h * nk + j) * qd];
        std::memcpy(k, src, size_t(nope) * sizeof(float));
        std::memcpy(k + nope, pe, size_t(rd) * sizeof(float));
        std::memcpy(&sc.vs[(h * nk + j) * vd], src + nope, size_t(vd) * sizeof(float));
      } else {
        bf16_t* k = &sc.ks16[size_t((h * nk + j) * qd)];
        kv_encode_row(KVElem::kBF16, src, nope, k, nullptr);
        kv_encode_row(KVElem::kBF16, pe, rd, k + nope, nullptr);
        kv_encode_row(KVElem::kBF16, src + nope, vd, &sc.vs16[size_t((h * nk + j) * vd)], nullptr);
      }
    }
  t.barrier();
  const int32_t page0 = 0;
  const AttnSeq one{0, s.n_q, s.pos0, &page0};
  KVLayerView view{sc.ks.data(), sc.vs.data(), nk, heads_, qd, vd};
  if (!f32) view.k = sc.ks16.data(), view.v = sc.vs16.data(), view.elem = KVElem::kBF16;
  const AttnParams ap{heads_, heads_, qd, scale_};
  paged_attention(t, &sc.q[s.q_row * Hq], Hq, &one, 1, view, ap, &sc.attn[s.q_row * heads_ * vd], heads_ * vd);
}

}  // namespace dpserve
