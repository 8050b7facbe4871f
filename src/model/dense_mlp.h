// A SiLU-gated MLP, down(silu(gate x) * up x), sliced over its intermediate dimension: each rank
// holds rows [f0, f0 + F/size) of gate and up and the same columns of down, computes its partial
// output, and the caller sums the partials over the ranks. Used for DeepSeek's and Qwen2-MoE's shared experts.
#pragma once

#include <string>

#include "kernels/matmul.h"
#include "model/parallel.h"
#include "model/weight_store.h"

namespace dpserve {

class WeightPrep;

struct MlpNames {
  std::string gate = "gate_proj.weight", up = "up_proj.weight", down = "down_proj.weight";
};

class DenseMlp {
 public:
  DenseMlp() = default;
  // Loads prefix + names.{gate,up,down} ([ffn, hidden], [ffn, hidden], [hidden, ffn]) and keeps this
  // rank's slice; fails naming `what` when ffn does not split evenly.
  DenseMlp(const WeightStore& store, const std::string& prefix, const MlpNames& names, int64_t hidden, int64_t ffn,
           const ShardSpec& split, const char* what);

  bool empty() const { return ffn_local_ == 0; }
  // Registers the three matrices for conversion at load (model/weight_prep.h); `prefix` names them.
  void add_weights(WeightPrep& prep, int64_t layer, const std::string& prefix, const MlpNames& names);
  // out[rows, hidden] += this rank's share of the MLP of x[rows, hidden] (times row_scale[row] when
  // given), on the thread team (collective); h: rows x ffn_local() scratch.
  void forward(Team& t, const float* x, int64_t rows, float* out, float* h, const float* row_scale = nullptr) const;
  int64_t ffn_local() const { return ffn_local_; }
  int64_t weight_bytes() const;  // the three matrices as run (this rank's slices)

 private:
  WeightView gate_, up_, down_;
  int64_t hidden_ = 0, ffn_local_ = 0, ffn_full_ = 0;
};

}  // namespace dpserve
