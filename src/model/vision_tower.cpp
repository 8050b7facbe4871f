#include "model/vision_tower.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/check.h"
#include "kernels/ops.h"

namespace dpserve {

namespace {

constexpr float kEps = 1e-6f;  // the tower's and the merger's RMSNorm

template <class T>
void grow(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}

}  // namespace

VisionTower::VisionTower(const WeightStore& store, const VisionConfig& c) : c_(c) {
  const int64_t D = c.hidden, F = c.ffn, M = D * c.merge * c.merge;
  {
    // Conv3d with stride = kernel over one patch is a product with the flattened kernel:
    // [D, C, T, P, P] is row-major [D, C*T*P*P], the order of image_patches' rows.
    const std::string n = "visual.patch_embed.proj.weight";
    const TensorInfo& t = store.get(n);
    const std::vector<int64_t> want{D, c.in_chans, c.temporal_patch, c.patch, c.patch};
    if (t.shape != want) fail("weights: {} has the wrong shape for vision_config", n);
    patch_embed_ = WeightView{t.data, t.dtype, D, c.patch_row(), c.patch_row()};
    if (store.has("visual.patch_embed.proj.bias")) fail("weights: a biased patch embedding is not supported");
  }
  blocks_.resize(size_t(c.depth));
  for (int64_t i = 0; i < c.depth; ++i) {
    Block& b = blocks_[size_t(i)];
    const std::string p = "visual.blocks." + std::to_string(i) + ".";
    b.norm1 = store.vector_f32(p + "norm1.weight", D);
    b.norm2 = store.vector_f32(p + "norm2.weight", D);
    b.qkv = store.matrix(p + "attn.qkv.weight", 3 * D, D);
    b.qkv_b = store.vector_f32(p + "attn.qkv.bias", 3 * D);
    b.proj = store.matrix(p + "attn.proj.weight", D, D);
    b.proj_b = store.vector_f32(p + "attn.proj.bias", D);
    b.gate = store.matrix(p + "mlp.gate_proj.weight", F, D);
    b.gate_b = store.vector_f32(p + "mlp.gate_proj.bias", F);
    b.up = store.matrix(p + "mlp.up_proj.weight", F, D);
    b.up_b = store.vector_f32(p + "mlp.up_proj.bias", F);
    b.down = store.matrix(p + "mlp.down_proj.weight", D, F);
    b.down_b = store.vector_f32(p + "mlp.down_proj.bias", D);
  }
  merge_norm_ = store.vector_f32("visual.merger.ln_q.weight", D);
  merge1_ = store.matrix("visual.merger.mlp.0.weight", M, M);
  merge1_b_ = store.vector_f32("visual.merger.mlp.0.bias", M);
  merge2_ = store.matrix("visual.merger.mlp.2.weight", c.out_hidden, M);
  merge2_b_ = store.vector_f32("visual.merger.mlp.2.bias", c.out_hidden);
  // 2-D RoPE over head_dim / 2 rotary dimensions: theta 10000, frequencies 1/theta^(2i / (hd/2)).
  const int64_t rd = c.head_dim() / 2;
  for (int64_t i = 0; i < rd / 2; ++i) inv_freq_.push_back(1.0 / std::pow(10000.0, double(2 * i) / double(rd)));
}

void VisionTower::prepare(int64_t gh, int64_t gw) {
  const int64_t m = c_.merge, P = gh * gw, D = c_.hidden, hd = c_.head_dim();
  DP_CHECK(gh > 0 && gw > 0 && gh % m == 0 && gw % m == 0, "vision: grid {}x{} is not a multiple of {}", gh, gw, m);
  grow(x_, P * D);
  grow(xn_, P * D);
  grow(qkv_, P * 3 * D);
  grow(attn_, P * D);
  grow(h_, P * std::max(c_.ffn, D));
  grow(h2_, P * c_.ffn);
  cs_.assign(size_t(P * hd), 0.f);
  // Rows come in merge-block order: block b = (bh, bw) of the merged grid, then its m x m patches.
  // A window is vw x vw merged tokens of the merged grid (partial at the right and bottom edges).
  const int64_t lw = gw / m, vw = c_.window_tokens();
  const int64_t nww = (lw + vw - 1) / vw, nwh = (gh / m + vw - 1) / vw;
  windows_.assign(size_t(nww * nwh), {});
  window_of_.resize(size_t(P));
  all_rows_.resize(size_t(P));
  const int64_t q = int64_t(inv_freq_.size()), half = hd / 2;
  for (int64_t r = 0; r < P; ++r) {
    const int64_t blk = r / (m * m), in = r % (m * m);
    const int64_t bh = blk / lw, bw = blk % lw;
    const int64_t win = (bh / vw) * nww + bw / vw;
    window_of_[size_t(r)] = int32_t(win);
    windows_[size_t(win)].push_back(int32_t(r));
    all_rows_[size_t(r)] = int32_t(r);
    const double hpos = double(bh * m + in / m), wpos = double(bw * m + in % m);
    float* cs = &cs_[size_t(r * hd)];
    for (int64_t i = 0; i < q; ++i) {
      cs[i] = float(std::cos(hpos * inv_freq_[size_t(i)]));
      cs[half + i] = float(std::sin(hpos * inv_freq_[size_t(i)]));
      cs[q + i] = float(std::cos(wpos * inv_freq_[size_t(i)]));
      cs[half + q + i] = float(std::sin(wpos * inv_freq_[size_t(i)]));
    }
  }
}

void VisionTower::attention(Team& t, const Block& b, bool full, int64_t P) {
  const int64_t D = c_.hidden, H = c_.n_heads, hd = c_.head_dim(), ld = 3 * D;
  matmul(t, xn_.data(), P, D, b.qkv, b.qkv_b.data(), qkv_.data(), ld);
  // Rotate q and k of every (row, head): rotate-half over the whole head with the row's angles.
  const Range r = t.share(P * H);
  for (int64_t it = r.begin; it < r.end; ++it) {
    const int64_t row = it / H, h = it % H;
    const float* cs = &cs_[size_t(row * hd)];
    rope(&qkv_[size_t(row * ld + h * hd)], 1, hd, hd, cs, cs + hd / 2, false);
    rope(&qkv_[size_t(row * ld + D + h * hd)], 1, hd, hd, cs, cs + hd / 2, false);
  }
  t.barrier();
  // Bidirectional attention of each row over its window (or the whole image), one (window, head)
  // at a time: its keys gathered transposed and its values gathered, so both inner loops run over
  // contiguous floats.
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const int64_t n_win = full ? 1 : int64_t(windows_.size());
  std::vector<float> kt, vv, p;
  t.dynamic(n_win * H, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      const std::vector<int32_t>& rows = full ? all_rows_ : windows_[size_t(it / H)];
      const int64_t h = it % H, nk = int64_t(rows.size());
      if (nk == 0) continue;
      kt.resize(size_t(hd * nk));
      vv.resize(size_t(nk * hd));
      p.resize(size_t(nk));
      for (int64_t j = 0; j < nk; ++j) {
        const float* src = &qkv_[size_t(rows[size_t(j)] * ld + D + h * hd)];
        for (int64_t d = 0; d < hd; ++d) kt[size_t(d * nk + j)] = src[d];
        std::memcpy(&vv[size_t(j * hd)], src + D, sizeof(float) * size_t(hd));
      }
      for (int64_t i = 0; i < nk; ++i) {
        const int32_t row = rows[size_t(i)];
        const float* q = &qkv_[size_t(row * ld + h * hd)];
        std::fill(p.begin(), p.end(), 0.f);
        for (int64_t d = 0; d < hd; ++d) {
          const float qd = q[d] * scale;
          const float* k = &kt[size_t(d * nk)];
          for (int64_t j = 0; j < nk; ++j) p[size_t(j)] += qd * k[j];
        }
        softmax(p.data(), nk);
        float* o = &attn_[size_t(row * D + h * hd)];
        std::fill(o, o + hd, 0.f);
        for (int64_t j = 0; j < nk; ++j) {
          const float pj = p[size_t(j)];
          const float* v = &vv[size_t(j * hd)];
          for (int64_t d = 0; d < hd; ++d) o[d] += pj * v[d];
        }
      }
    }
  });
  matmul(t, attn_.data(), P, D, b.proj, b.proj_b.data(), h_.data(), D);
  add_inplace(t, x_.data(), h_.data(), P * D);
}

void VisionTower::forward(Team& t, const float* patches, int64_t gh, int64_t gw, float* out) {
  const int64_t P = gh * gw, D = c_.hidden, F = c_.ffn, M = D * c_.merge * c_.merge;
  matmul(t, patches, P, c_.patch_row(), patch_embed_, nullptr, x_.data(), D);
  for (int64_t l = 0; l < c_.depth; ++l) {
    const Block& b = blocks_[size_t(l)];
    const bool full = std::find(c_.fullatt_blocks.begin(), c_.fullatt_blocks.end(), l) != c_.fullatt_blocks.end();
    rmsnorm(t, x_.data(), b.norm1.data(), xn_.data(), P, D, kEps);
    attention(t, b, full, P);
    // SwiGLU with biases: down(silu(gate x + bg) * (up x + bu)) + bd.
    rmsnorm(t, x_.data(), b.norm2.data(), xn_.data(), P, D, kEps);
    matmul(t, xn_.data(), P, D, b.gate, b.gate_b.data(), h_.data(), F);
    matmul(t, xn_.data(), P, D, b.up, b.up_b.data(), h2_.data(), F);
    silu_mul(t, h_.data(), h2_.data(), h_.data(), P * F);
    matmul(t, h_.data(), P, F, b.down, b.down_b.data(), attn_.data(), D);
    add_inplace(t, x_.data(), attn_.data(), P * D);
  }
  // Merger: RMSNorm per patch, each block's m*m consecutive rows as one row, Linear, GELU (erf), Linear.
  rmsnorm(t, x_.data(), merge_norm_.data(), xn_.data(), P, D, kEps);
  const int64_t T = tokens(gh, gw);
  matmul(t, xn_.data(), T, M, merge1_, merge1_b_.data(), h_.data(), M);
  const Range r = t.share(T * M);
  for (int64_t i = r.begin; i < r.end; ++i) {
    const double v = h_[size_t(i)];
    h_[size_t(i)] = float(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
  }
  t.barrier();
  matmul(t, h_.data(), T, M, merge2_, merge2_b_.data(), out, c_.out_hidden);
}

}  // namespace dpserve
