// Qwen2.5-VL's vision tower: an image's patch rows (vision/image_input.h image_patches) become one
// embedding of the language model's hidden size per merge x merge block of patches, i.e. one per
// <|image_pad|> token, in the prompt's order. Runs on the model's thread team, in fp32 activations
// over the weights as stored.
//
// Where it runs (docs/models.md, "Where the tower runs"): on every rank of the request's group,
// either whole on each (replicated) or sequence parallel over them (sharded). Sharded, each rank
// takes a contiguous run of whole attention windows (balanced by rows) and computes only their rows
// through every block; the full-attention blocks all-gather K and V of all rows over the group, and
// the merged rows are all-gathered at the end. Every row's arithmetic is the same whatever the
// share (batch-invariant products, keys read in a fixed order), so the output is bit-identical to
// the replicated tower's for any group size.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/team.h"
#include "model/config.h"
#include "model/parallel.h"
#include "model/weight_store.h"

namespace dpserve {

class WeightPrep;

// How the group of ranks that needs an image runs the tower (--vision-tower).
enum class VisionPlacement {
  kSharded,     // by windows over the group's ranks (the default; docs/models.md has the measurements)
  kReplicated,  // whole on every rank of the group
};
const char* to_string(VisionPlacement p);

class VisionTower {
 public:
  // Reads the visual.* tensors (after any prefix renaming) of `store`.
  VisionTower(const WeightStore& store, const VisionConfig& c);

  // Registers the tower's matrices with the model's load-time preparation (model/weight_prep.h),
  // as float matrices whatever --quantization says: bf16 ones then run in the 16-row layout of the
  // AVX-512 BF16 kernel, like the language model's.
  void add_weights(WeightPrep& prep);

  // LM tokens of an image of grid_h x grid_w patches.
  int64_t tokens(int64_t grid_h, int64_t grid_w) const { return grid_h * grid_w / (c_.merge * c_.merge); }
  // Sizes the scratch and lays out the windows, this rank's share of them (`shard`: its place in
  // the group running the tower; size 1 = the whole image) and the 2-D RoPE angles of its rows for
  // an image of grid_h x grid_w patches; on one thread, before the team runs forward() on the same
  // grid.
  void prepare(int64_t grid_h, int64_t grid_w, ShardSpec shard = {});
  // Collective over the team, and with a shard of size > 1 over the group's ranks (comm's
  // attn_allgatherv, called by the team's leader): patches [grid_h * grid_w, patch_row] in
  // merge-block order (as image_patches emits them), out [tokens, out_hidden] in the same order,
  // whole on every rank of the group.
  void forward(Team& t, const float* patches, int64_t grid_h, int64_t grid_w, float* out, ModelComm* comm = nullptr);

  // Window-order rows [begin, end) of rank r of n for an image whose windows hold `rows` patch rows
  // each (in window order): whole windows, contiguous, each rank's share as close to P * (r+1) / n
  // cumulative rows as whole windows allow. Exposed for tests.
  static std::vector<int64_t> window_shares(const std::vector<int64_t>& rows, int n);

 private:
  struct Block {
    std::vector<float> norm1, norm2, qkv_b, proj_b, gate_b, up_b, down_b;
    WeightView qkv, proj, gate, up, down;
  };
  void attention(Team& t, const Block& b, bool full, ModelComm* comm);
  // All-gather over the group (nothing with one rank): buf holds `width` floats per `per` window-order
  // rows, this rank's block already at its place; collective over the team.
  void gather_rows(Team& t, float* buf, int64_t per, int64_t width, ModelComm* comm);

  VisionConfig c_;
  WeightView patch_embed_, merge1_, merge2_;
  std::vector<float> merge_norm_, merge1_b_, merge2_b_;
  std::vector<Block> blocks_;
  std::vector<double> inv_freq_;  // 2-D RoPE: head_dim / 4 frequencies, shared by rows and columns
  // Scratch and per-image layout (prepare()).
  // Rows are held in window order (the windows in index order, each window's rows ascending);
  // this rank computes window-order rows [row0_, row0_ + rows_) only: its "local" rows.
  std::vector<float> x_, xn_, qkv_, attn_, h_, h2_, cs_, patches_, kv_all_, merged_;
  std::vector<int32_t> order_;    // window-order position -> patch row (image_patches' order)
  std::vector<int32_t> key_pos_;  // patch row -> window-order position (full attention's key order)
  std::vector<int64_t> share_;    // window-order row where each rank's share starts, plus P at the end
  std::vector<std::vector<int32_t>> local_windows_;  // local rows of each of this rank's windows
  std::vector<int32_t> local_rows_;                  // 0 .. rows_ - 1
  ShardSpec shard_;
  int64_t P_ = 0, row0_ = 0, rows_ = 0;
};

}  // namespace dpserve
