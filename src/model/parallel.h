// How one rank's model is sharded, and the collectives the forward pass needs.
//
// The model never calls MPI itself: a ModelComm implementation (src/parallel) does.
// With no ModelComm the model runs whole on one rank.
#pragma once

#include <cstdint>
#include <vector>

namespace dpserve {

struct ShardSpec {
  int rank = 0;
  int size = 1;
  // [begin, end) of n items split as evenly as possible, lower ranks first.
  int64_t begin(int64_t n) const { return n * rank / size; }
  int64_t end(int64_t n) const { return n * (rank + 1) / size; }
};

struct ModelParallel {
  ShardSpec attn;  // attention heads: the ranks of this DP group
  ShardSpec mlp;   // dense MLP intermediate dim / experts: every rank
  ShardSpec vocab; // embedding + LM head vocabulary
  // MoE layers: whole experts split over `ep` ranks, each expert's intermediate dimension over
  // `moe_tp` ranks (ep.size * moe_tp.size == mlp.size).
  ShardSpec ep;
  ShardSpec moe_tp;
};

class ModelComm {
 public:
  virtual ~ModelComm() = default;
  // Sum x over the attention-TP group (after o_proj).
  virtual void attn_allreduce(float* x, int64_t n) = 0;
  // Sum x over the MLP group (after down_proj), for dense TP without DP attention.
  virtual void mlp_allreduce(float* x, int64_t n) = 0;
  // Concatenate each rank's vocab slice of `rows` logit rows into full rows.
  virtual void vocab_allgather(const float* local, int64_t rows, int64_t local_cols, float* full,
                               int64_t vocab) = 0;

  // The vision tower sharded over the attention group (model/vision_tower.h): buf holds rank r's
  // counts[r] floats at displs[r] (n ranks, the group's size); this rank's block is in place, and
  // every rank ends with all of them.
  virtual void attn_allgatherv(float* buf, const int64_t* counts, const int64_t* displs, int n) = 0;

  // DP attention: the MLP runs on every group's rows at once. dp_gather collects this group's
  // `rows` hidden rows from all groups into `global` and returns the global row count; after the
  // MLP, dp_scatter sums every rank's partial output and hands back this group's rows.
  virtual bool dp_gather_enabled() const { return false; }
  virtual int64_t dp_gather(const float* local, int64_t rows, int64_t hidden, std::vector<float>& global) {
    return 0;
  }
  virtual void dp_scatter(std::vector<float>& partial, int64_t hidden, float* local, int64_t rows) {}
  // Global rows that are only padding (MAX_LEN): never routed to experts.
  virtual bool dp_is_padding(int64_t row) const { return false; }
};

}  // namespace dpserve
