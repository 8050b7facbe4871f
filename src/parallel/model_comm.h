// The model's collectives (model/parallel.h) over this rank's MPI communicators:
// attention all-reduce inside the DP group, MLP all-reduce or DP gather/scatter
// over the MLP group, and the LM head's vocab all-gather inside the DP group.
#pragma once

#include <atomic>
#include <memory>

#include "parallel/comm.h"
#include "parallel/dp_attention.h"
#include "parallel/topology.h"
#include "model/parallel.h"

namespace dpserve {

// Time spent in each collective the forward pass calls, on this rank. `seconds` includes waiting for
// the slowest rank to arrive (a collective cannot finish before it), unless the waits are split off:
// then a barrier on the same communicator runs first and its time is `wait_seconds`.
struct CollectiveTimes {
  struct Entry {
    int64_t calls = 0;
    double seconds = 0;
    int64_t bytes = 0;  // this rank's payload (what it sends in, summed over calls)
    double wait_seconds = 0;
    double mean_us() const { return calls ? 1e6 * seconds / double(calls) : 0.0; }
    double mean_wait_us() const { return calls ? 1e6 * wait_seconds / double(calls) : 0.0; }
  };
  Entry attn_allreduce, mlp_allreduce, dp_gather, dp_scatter, vocab_allgather;
  CollectiveTimes minus(const CollectiveTimes& before) const;
};

// Shard specs the model should load with for this rank's topology.
ModelParallel model_parallel_for(const Topology& topo);

class DistModelComm : public ModelComm {
 public:
  // `split_waits`: a barrier before every collective, timed apart (diagnostics; slows steps).
  DistModelComm(const Comms& comms, const Topology& topo, DpPaddingRequest padding,
                DpTransport transport = DpTransport::kGatherScatter, bool split_waits = false);

  // Once per step, on every rank of the MLP group, before the forward pass.
  void begin_step(const StepSync& sync);
  DpPaddingMode last_mode() const { return layout_ ? layout_->mode() : DpPaddingMode::kSumLen; }

  void attn_allreduce(float* x, int64_t n) override;
  void mlp_allreduce(float* x, int64_t n) override;
  void vocab_allgather(const float* local, int64_t rows, int64_t local_cols, float* full, int64_t vocab) override;
  void attn_allgatherv(float* buf, const int64_t* counts, const int64_t* displs, int n) override;
  bool dp_gather_enabled() const override { return topo_.dp_attention; }
  int64_t dp_gather(const float* local, int64_t rows, int64_t hidden, std::vector<float>& global) override;
  void dp_scatter(std::vector<float>& partial, int64_t hidden, float* local, int64_t rows) override;
  bool dp_is_padding(int64_t row) const override;

  // Totals since start; safe to read from another thread while steps run.
  CollectiveTimes times() const;

 private:
  struct Counter {
    std::atomic<int64_t> calls{0}, nanos{0}, bytes{0}, wait_nanos{0};
    void add(int64_t ns, int64_t b, int64_t wait_ns);
    CollectiveTimes::Entry get() const;
  };
  // Barrier on `c` when waits are split; returns its nanoseconds (0 otherwise).
  int64_t wait_for_all(const Comm& c) const;
  bool split_waits_ = false;
  Counter t_attn_, t_mlp_, t_gather_, t_scatter_, t_vocab_;
  const Comms& comms_;
  Topology topo_;
  DpPaddingRequest padding_;
  std::unique_ptr<DpGatherScatter> gs_;
  std::unique_ptr<DpLayout> layout_;
  std::vector<float> gather_buf_;
};

}  // namespace dpserve
