#include "model/vision_tower.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/check.h"
#include "kernels/ops.h"
#include "model/weight_prep.h"

namespace dpserve {

namespace {

constexpr float kEps = 1e-6f;  // the tower's and the merger's RMSNorm
constexpr int kJ = 64;         // attention: keys scored at once (four 16-float vectors)
constexpr int kD = 48;         // attention: value columns summed at once (three vectors; 80 = 48 + 32 padded)

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

std::vector<int64_t> VisionTower::window_shares(const std::vector<int64_t>& rows, int n) {
  const int64_t W = int64_t(rows.size());
  std::vector<int64_t> cum(size_t(W + 1), 0);
  for (int64_t w = 0; w < W; ++w) cum[size_t(w + 1)] = cum[size_t(w)] + rows[size_t(w)];
  const int64_t P = cum[size_t(W)];
  std::vector<int64_t> at(size_t(n + 1), 0);
  int64_t b = 0;  // windows [0, b) are given to ranks before r
  for (int r = 1; r < n; ++r) {
    // The window boundary nearest P * r / n (the lower one on a tie), never before the last one.
    const int64_t target = P * r;  // compared as cum * n
    while (b < W && cum[size_t(b + 1)] * n <= target) ++b;
    if (b < W && cum[size_t(b + 1)] * n - target < target - cum[size_t(b)] * n) ++b;
    at[size_t(r)] = cum[size_t(b)];
  }
  at[size_t(n)] = P;
  return at;
}

void VisionTower::prepare(int64_t gh, int64_t gw, ShardSpec shard) {
  const int64_t m = c_.merge, P = gh * gw, D = c_.hidden, hd = c_.head_dim();
  DP_CHECK(gh > 0 && gw > 0 && gh % m == 0 && gw % m == 0, "vision: grid {}x{} is not a multiple of {}", gh, gw, m);
  DP_CHECK(shard.size >= 1 && shard.rank >= 0 && shard.rank < shard.size);
  // Rows come in merge-block order: block b = (bh, bw) of the merged grid, then its m x m patches.
  // A window is vw x vw merged tokens of the merged grid (partial at the right and bottom edges), so
  // it holds whole merge blocks, whose m*m rows stay consecutive in window order.
  const int64_t lw = gw / m, vw = c_.window_tokens();
  const int64_t nww = (lw + vw - 1) / vw, nwh = (gh / m + vw - 1) / vw;
  std::vector<std::vector<int32_t>> windows(size_t(nww * nwh));
  for (int64_t r = 0; r < P; ++r) {
    const int64_t blk = r / (m * m), bh = blk / lw, bw = blk % lw;
    windows[size_t((bh / vw) * nww + bw / vw)].push_back(int32_t(r));
  }
  std::vector<int64_t> win_rows;
  order_.clear();
  for (const auto& w : windows) {
    win_rows.push_back(int64_t(w.size()));
    order_.insert(order_.end(), w.begin(), w.end());
  }
  key_pos_.resize(size_t(P));
  for (int64_t i = 0; i < P; ++i) key_pos_[size_t(order_[size_t(i)])] = int32_t(i);
  share_ = window_shares(win_rows, shard.size);
  shard_ = shard;
  P_ = P;
  row0_ = share_[size_t(shard.rank)];
  rows_ = share_[size_t(shard.rank + 1)] - row0_;
  local_windows_.clear();
  for (int64_t w = 0, at = 0; w < int64_t(windows.size()); at += win_rows[size_t(w)], ++w) {
    if (at < row0_ || at >= row0_ + rows_ || win_rows[size_t(w)] == 0) continue;
    std::vector<int32_t> rows(static_cast<size_t>(win_rows[size_t(w)]));
    for (size_t j = 0; j < rows.size(); ++j) rows[j] = int32_t(at - row0_ + int64_t(j));
    local_windows_.push_back(std::move(rows));
  }
  local_rows_.resize(size_t(rows_));
  for (int64_t i = 0; i < rows_; ++i) local_rows_[size_t(i)] = int32_t(i);

  const int64_t L = rows_;
  grow(x_, L * D);
  grow(xn_, L * D);
  grow(qkv_, L * 3 * D);
  grow(attn_, L * D);
  grow(h_, L * std::max(c_.ffn, D));
  grow(h2_, L * c_.ffn);
  grow(patches_, L * c_.patch_row());
  if (!c_.fullatt_blocks.empty() && shard.size > 1) grow(kv_all_, P * 2 * D);
  grow(merged_, tokens(gh, gw) * c_.out_hidden);
  cs_.assign(size_t(L * hd), 0.f);
  const int64_t q = int64_t(inv_freq_.size()), half = hd / 2;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t r = order_[size_t(row0_ + i)];
    const int64_t blk = r / (m * m), in = r % (m * m);
    const int64_t bh = blk / lw, bw = blk % lw;
    const double hpos = double(bh * m + in / m), wpos = double(bw * m + in % m);
    float* cs = &cs_[size_t(i * hd)];
    for (int64_t k = 0; k < q; ++k) {
      cs[k] = float(std::cos(hpos * inv_freq_[size_t(k)]));
      cs[half + k] = float(std::sin(hpos * inv_freq_[size_t(k)]));
      cs[q + k] = float(std::cos(wpos * inv_freq_[size_t(k)]));
      cs[half + q + k] = float(std::sin(wpos * inv_freq_[size_t(k)]));
    }
  }
}

void VisionTower::gather_rows(Team& t, float* buf, int64_t per, int64_t width, ModelComm* comm) {
  if (shard_.size == 1) return;  // one rank: its rows are all the rows, nothing to exchange
  DP_CHECK(comm, "vision: a sharded tower needs the group's communicator");
  t.barrier();  // every member's writes into buf are done
  if (t.leader()) {
    std::vector<int64_t> counts(size_t(shard_.size)), displs(size_t(shard_.size));
    for (int r = 0; r < shard_.size; ++r) {
      displs[size_t(r)] = share_[size_t(r)] / per * width;
      counts[size_t(r)] = (share_[size_t(r + 1)] - share_[size_t(r)]) / per * width;
    }
    comm->attn_allgatherv(buf, counts.data(), displs.data(), shard_.size);
  }
  t.barrier();
}

void VisionTower::attention(Team& t, const Block& b, bool full, ModelComm* comm) {
  const int64_t D = c_.hidden, H = c_.n_heads, hd = c_.head_dim(), ld = 3 * D, L = rows_;
  matmul(t, xn_.data(), L, D, b.qkv, b.qkv_b.data(), qkv_.data(), ld);
  // Rotate q and k of every (row, head): rotate-half over the whole head with the row's angles.
  const Range r = t.share(L * H);
  for (int64_t it = r.begin; it < r.end; ++it) {
    const int64_t row = it / H, h = it % H;
    const float* cs = &cs_[size_t(row * hd)];
    rope(&qkv_[size_t(row * ld + h * hd)], 1, hd, hd, cs, cs + hd / 2, false);
    rope(&qkv_[size_t(row * ld + D + h * hd)], 1, hd, hd, cs, cs + hd / 2, false);
  }
  t.barrier();  // the rows' heads were rotated by other members than the ones reading them below
  // Keys and values: a window's are all local; the whole image's are every rank's, all-gathered in
  // window order and read in patch-row order (key_pos_), the order the replicated tower reads them.
  const float* kv = qkv_.data();
  int64_t kv_ld = ld, k_off = D;
  if (full && shard_.size > 1) {  // alone, every key is already in qkv_ (window order, as key_pos_ reads it)
    const Range rr = t.share(L);
    for (int64_t i = rr.begin; i < rr.end; ++i)
      std::memcpy(&kv_all_[size_t((row0_ + i) * 2 * D)], &qkv_[size_t(i * ld + D)], sizeof(float) * size_t(2 * D));
    gather_rows(t, kv_all_.data(), 1, 2 * D, comm);
    kv = kv_all_.data();
    kv_ld = 2 * D;
    k_off = 0;
    t.barrier();
  }
  // Bidirectional attention of each local row over its window (or the whole image), one (window,
  // head) at a time: its keys gathered transposed and its values gathered, so both inner loops run
  // over contiguous floats.
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const int64_t n_win = full ? (L > 0 ? 1 : 0) : int64_t(local_windows_.size());
  std::vector<float> kt, vv, p;
  t.dynamic(n_win * H, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      const std::vector<int32_t>& queries = full ? local_rows_ : local_windows_[size_t(it / H)];
      const std::vector<int32_t>& keys = full ? key_pos_ : queries;
      const int64_t h = it % H, nk = int64_t(keys.size());
      if (nk == 0) continue;
      // Keys transposed and values, zero-padded to whole blocks (kJ keys, kD value columns) so
      // the loops below run on fixed-size blocks the compiler keeps in vector registers: each
      // score is still the sum over d in order, each output column the sum over keys in order.
      const int64_t nkp = (nk + kJ - 1) / kJ * kJ, hdp = (hd + kD - 1) / kD * kD;
      kt.assign(size_t(hd * nkp), 0.f);
      vv.assign(size_t(nk * hdp), 0.f);
      p.resize(size_t(nkp));
      for (int64_t j = 0; j < nk; ++j) {
        const float* src = &kv[size_t(keys[size_t(j)] * kv_ld + k_off + h * hd)];
        for (int64_t d = 0; d < hd; ++d) kt[size_t(d * nkp + j)] = src[d];
        std::memcpy(&vv[size_t(j * hdp)], src + D, sizeof(float) * size_t(hd));
      }
      for (const int32_t row : queries) {
        const float* q = &qkv_[size_t(row * ld + h * hd)];
        for (int64_t j0 = 0; j0 < nkp; j0 += kJ) {
          float acc[kJ] = {};
          for (int64_t d = 0; d < hd; ++d) {
            const float qd = q[d] * scale;
            const float* k = &kt[size_t(d * nkp + j0)];
            for (int j = 0; j < kJ; ++j) acc[j] += qd * k[j];
          }
          std::memcpy(&p[size_t(j0)], acc, sizeof(acc));
        }
        softmax(p.data(), nk);
        float* o = &attn_[size_t(row * D + h * hd)];
        for (int64_t d0 = 0; d0 < hd; d0 += kD) {
          float acc[kD] = {};
          for (int64_t j = 0; j < nk; ++j) {
            const float pj = p[size_t(j)];
            const float* v = &vv[size_t(j * hdp + d0)];
            for (int d = 0; d < kD; ++d) acc[d] += pj * v[d];
          }
          std::memcpy(o + d0, acc, sizeof(float) * size_t(std::min<int64_t>(kD, hd - d0)));
        }
      }
    }
  });
  matmul(t, attn_.data(), L, D, b.proj, b.proj_b.data(), h_.data(), D);
  add_inplace(t, x_.data(), h_.data(), L * D);
}

void VisionTower::forward(Team& t, const float* patches, int64_t gh, int64_t gw, float* out, ModelComm* comm) {
  const int64_t D = c_.hidden, F = c_.ffn, M = D * c_.merge * c_.merge, K = c_.patch_row(), L = rows_;
  DP_CHECK(gh * gw == P_, "vision: forward on a grid prepare() did not lay out");
  {  // this rank's patch rows, in window order
    const Range r = t.share(L);
    for (int64_t i = r.begin; i < r.end; ++i)
      std::memcpy(&patches_[size_t(i * K)], patches + int64_t(order_[size_t(row0_ + i)]) * K, sizeof(float) * size_t(K));
    t.barrier();
  }
  matmul(t, patches_.data(), L, K, patch_embed_, nullptr, x_.data(), D);
  for (int64_t l = 0; l < c_.depth; ++l) {
    const Block& b = blocks_[size_t(l)];
    const bool full = std::find(c_.fullatt_blocks.begin(), c_.fullatt_blocks.end(), l) != c_.fullatt_blocks.end();
    rmsnorm(t, x_.data(), b.norm1.data(), xn_.data(), L, D, kEps);
    attention(t, b, full, comm);
    // SwiGLU with biases: down(silu(gate x + bg) * (up x + bu)) + bd.
    rmsnorm(t, x_.data(), b.norm2.data(), xn_.data(), L, D, kEps);
    matmul(t, xn_.data(), L, D, b.gate, b.gate_b.data(), h_.data(), F);
    matmul(t, xn_.data(), L, D, b.up, b.up_b.data(), h2_.data(), F);
    silu_mul(t, h_.data(), h2_.data(), h_.data(), L * F);
    matmul(t, h_.data(), L, F, b.down, b.down_b.data(), attn_.data(), D);
    add_inplace(t, x_.data(), attn_.data(), L * D);
  }
  // Merger: RMSNorm per patch, each block's m*m consecutive rows as one row, Linear, GELU (erf), Linear.
  rmsnorm(t, x_.data(), merge_norm_.data(), xn_.data(), L, D, kEps);
  const int64_t mm = c_.merge * c_.merge, TL = L / mm, T = tokens(gh, gw), O = c_.out_hidden;
  matmul(t, xn_.data(), TL, M, merge1_, merge1_b_.data(), h_.data(), M);
  const Range r = t.share(TL * M);
  for (int64_t i = r.begin; i < r.end; ++i) {
    const double v = h_[size_t(i)];
    h_[size_t(i)] = float(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
  }
  t.barrier();
  // This rank's tokens land at their window-order place; all ranks' are gathered, then each token
  // goes to its merge block's place in `out`.
  matmul(t, h_.data(), TL, M, merge2_, merge2_b_.data(), &merged_[size_t(row0_ / mm * O)], O);
  gather_rows(t, merged_.data(), mm, O, comm);
  {
    const Range rt = t.share(T);
    for (int64_t i = rt.begin; i < rt.end; ++i)
      std::memcpy(out + int64_t(order_[size_t(i * mm)] / mm) * O, &merged_[size_t(i * O)], sizeof(float) * size_t(O));
    t.barrier();
  }
}

void VisionTower::add_weights(WeightPrep& prep) {
  // kKeep: the tower stays in its float type (llama.cpp's mmproj files keep it in f16 too); the
  // products' inputs are image patches, not the text activations --quantization was made for.
  prep.add(&patch_embed_, WeightRole::kKeep, -1, patch_embed_.cols, "visual.patch_embed.proj.weight");
  for (int64_t i = 0; i < int64_t(blocks_.size()); ++i) {
    Block& b = blocks_[size_t(i)];
    const std::string p = "visual.blocks." + std::to_string(i) + ".";
    prep.add(&b.qkv, WeightRole::kKeep, -1, b.qkv.cols, p + "attn.qkv.weight");
    prep.add(&b.proj, WeightRole::kKeep, -1, b.proj.cols, p + "attn.proj.weight");
    prep.add(&b.gate, WeightRole::kKeep, -1, b.gate.cols, p + "mlp.gate_proj.weight");
    prep.add(&b.up, WeightRole::kKeep, -1, b.up.cols, p + "mlp.up_proj.weight");
    prep.add(&b.down, WeightRole::kKeep, -1, b.down.cols, p + "mlp.down_proj.weight");
  }
  prep.add(&merge1_, WeightRole::kKeep, -1, merge1_.cols, "visual.merger.mlp.0.weight");
  prep.add(&merge2_, WeightRole::kKeep, -1, merge2_.cols, "visual.merger.mlp.2.weight");
}

const char* to_string(VisionPlacement p) { return p == VisionPlacement::kSharded ? "sharded" : "replicated"; }

}  // namespace dpserve
