#include "model/dense_mlp.h"

#include "core/check.h"
#include "model/weight_prep.h"

namespace dpserve {

DenseMlp::DenseMlp(const WeightStore& store, const std::string& prefix, const MlpNames& n, int64_t hidden,
                   int64_t ffn, const ShardSpec& split, const char* what)
    : hidden_(hidden) {
  if (ffn % split.size != 0) fail("--tp-size: {} intermediate size {} cannot be split over {} ranks", what, ffn, split.size);
  ffn_local_ = ffn / split.size;
  ffn_full_ = ffn;
  const int64_t f0 = split.rank * ffn_local_;
  gate_ = store.matrix(prefix + n.gate, ffn, hidden).row_slice(f0, ffn_local_);
  up_ = store.matrix(prefix + n.up, ffn, hidden).row_slice(f0, ffn_local_);
  down_ = shard_cols(store.matrix(prefix + n.down, hidden, ffn), f0, ffn_local_, prefix + n.down, "--tp-size");
}

int64_t DenseMlp::weight_bytes() const { return gate_.bytes() + up_.bytes() + down_.bytes(); }

void DenseMlp::add_weights(WeightPrep& prep, int64_t layer, const std::string& prefix, const MlpNames& n) {
  prep.add(&gate_, WeightRole::kMlpGate, layer, hidden_, prefix + n.gate);
  prep.add(&up_, WeightRole::kMlpUp, layer, hidden_, prefix + n.up);
  prep.add(&down_, WeightRole::kMlpDown, layer, ffn_full_, prefix + n.down);
}

void DenseMlp::forward(Team& t, const float* x, int64_t rows, float* out, float* h, const float* row_scale) const {
  if (rows == 0) return;
  MatmulJob gu;  // h = silu(x gate^T) * (x up^T)
  gu.x = x;
  gu.ldx = hidden_;
  gu.M = rows;
  gu.w = gate_;
  gu.w_up = up_;
  gu.y = h;
  gu.ldy = ffn_local_;
  matmul_jobs(t, &gu, 1);
  MatmulJob down;
  down.x = h;
  down.ldx = ffn_local_;
  down.M = rows;
  down.w = down_;
  down.y = out;
  down.ldy = hidden_;
  down.store = MatmulStore::Add;
  down.scale = row_scale;
  matmul_jobs(t, &down, 1);
}

}  // namespace dpserve
