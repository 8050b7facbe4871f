// Qwen2.5-VL's vision tower: an image's patch rows (vision/image_input.h image_patches) become one
// embedding of the language model's hidden size per merge x merge block of patches, i.e. one per
// <|image_pad|> token, in the prompt's order. Runs on the model's thread team, in fp32 activations
// over the weights as stored; every rank that needs an image runs it itself (docs/models.md).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/team.h"
#include "model/config.h"
#include "model/weight_store.h"

namespace dpserve {

class VisionTower {
 public:
  // Reads the visual.* tensors (after any prefix renaming) of `store`.
  VisionTower(const WeightStore& store, const VisionConfig& c);

  // LM tokens of an image of grid_h x grid_w patches.
  int64_t tokens(int64_t grid_h, int64_t grid_w) const { return grid_h * grid_w / (c_.merge * c_.merge); }
  // Sizes the scratch and lays out the windows and 2-D RoPE angles for an image of grid_h x grid_w
  // patches; on one thread, before the team runs forward() on the same grid.
  void prepare(int64_t grid_h, int64_t grid_w);
  // Collective over the team: patches [grid_h * grid_w, patch_row] in merge-block order (as
  // image_patches emits them), out [tokens, out_hidden].
  void forward(Team& t, const float* patches, int64_t grid_h, int64_t grid_w, float* out);

 private:
  struct Block {
    std::vector<float> norm1, norm2, qkv_b, proj_b, gate_b, up_b, down_b;
    WeightView qkv, proj, gate, up, down;
  };
  void attention(Team& t, const Block& b, bool full, int64_t P);

  VisionConfig c_;
  WeightView patch_embed_, merge1_, merge2_;
  std::vector<float> merge_norm_, merge1_b_, merge2_b_;
  std::vector<Block> blocks_;
  std::vector<double> inv_freq_;  // 2-D RoPE: head_dim / 4 frequencies, shared by rows and columns
  // Scratch and per-image layout (prepare()).
  std::vector<float> x_, xn_, qkv_, attn_, h_, h2_, cs_;
  std::vector<int32_t> window_of_;            // window of each patch row
  std::vector<std::vector<int32_t>> windows_;  // rows of each window
  std::vector<int32_t> all_rows_;
};

}  // namespace dpserve
