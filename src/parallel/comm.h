// MPI process runtime and RAII communicators with the collectives the model needs, so no layer
// above src/parallel includes <mpi.h>. Only the step thread may call these (MPI_THREAD_FUNNELED).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "parallel/topology.h"

namespace dpserve {

// True when this process was started by an MPI launcher (mpirun / srun / hydra), judged from the
// environment the launcher sets (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE, ...). Lets `dpserve`
// decide whether to re-execute itself under mpirun.
bool launched_under_mpi();
// Ranks of this job on this machine (launcher environment; 1 when not launched by one).
int local_world_size();

// Initialises MPI with MPI_THREAD_FUNNELED on construction and finalises it on destruction, except
// in a singleton (no launcher) destroyed by an exception: the process is ending on an error then.
// A rank of a job of several that ends on an error while its peers still wait for it in the step
// loop must stop the job itself (abort_job): MPI_Finalize would wait for them.
// One per process; MPI cannot be re-initialised after finalisation.
class MpiRuntime {
 public:
  MpiRuntime(int* argc = nullptr, char*** argv = nullptr);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  // Of the job's world: MPI_COMM_WORLD, or the nodes joined by join_nodes() (node_join.h).
  int world_rank() const;
  int world_size() const;

 private:
  int rank_ = 0;
  int size_ = 1;
  bool finalize_ = false;
  bool singleton_ = false;  // MPI initialised here without a launcher
};

bool mpi_initialized();

// Prints "rank N: <message>" to stderr and stops every rank of the job (MPI_Abort) with `code`;
// without MPI it just exits. Use when one rank cannot go on (bad model path, OOM, bad flags):
// the others would otherwise wait forever in their next collective.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

// Element types the collectives accept. bf16 values travel as uint16_t (bf16_t); sums of bf16
// add in fp32 and round back to bf16 at every combining step.
// Byte collectives take std::byte; counts are in elements of the given type.
class Comm {
 public:
  Comm() = default;  // null communicator: this rank is not a member
  ~Comm();
  Comm(Comm&& o) noexcept;
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  static Comm world();
  // Split `parent` like MPI_Comm_split: ranks with equal color form one communicator ordered by
  // key. A negative color leaves this rank out (it gets a null Comm).
  static Comm split(const Comm& parent, int color, int key);

  bool valid() const { return handle_ != nullptr; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  void barrier() const;

  // In place; every rank ends with the element-wise sum over all ranks.
  template <typename T> void allreduce_sum(std::span<T> data) const;     // float, bf16_t, int32_t, int64_t
  template <typename T> void allreduce_max(std::span<T> data) const;     // int32_t, int64_t, float

  // recv = concatenation of every rank's `send` (all the same length) in rank order.
  template <typename T> void allgather(std::span<const T> send, std::span<T> recv) const;
  // Rank r sends counts[r] elements; they land at recv[displs[r]...]. counts/displs are the same on
  // every rank. Empty displs = packed end to end.
  template <typename T>
  void allgatherv(std::span<const T> send, std::span<T> recv, std::span<const int64_t> counts,
                  std::span<const int64_t> displs = {}) const;
  // Same, but this rank's block is already in place at buf[displs[rank]...] (MPI_IN_PLACE).
  template <typename T>
  void allgatherv_inplace(std::span<T> buf, std::span<const int64_t> counts, std::span<const int64_t> displs) const;

  // send holds size() blocks of recv.size() elements; rank r receives the sum over ranks of block r.
  // Point-to-point underneath (MPI_Isend / MPI_Irecv with every peer, see comm.cpp for why); the
  // ranks' partials are added in rank order, so results do not depend on timing. recv must not
  // overlap send.
  template <typename T> void reduce_scatter(std::span<const T> send, std::span<T> recv) const;
  // send holds sum(counts) elements laid end to end; rank r receives the sum of its counts[r] part.
  template <typename T>
  void reduce_scatter(std::span<const T> send, std::span<T> recv, std::span<const int64_t> counts) const;

  template <typename T> void broadcast(std::span<T> data, int root) const;  // float, bf16_t, std::byte, ints

  // recv (significant at root only) = every rank's equal-length `send` in rank order.
  void gather(std::span<const std::byte> send, std::span<std::byte> recv, int root) const;
  // Variable sizes, sizes exchanged internally; root gets each rank's bytes, others an empty vector.
  std::vector<std::vector<std::byte>> gatherv(std::span<const std::byte> send, int root) const;

  // Opaque MPI_Comm for the few places in src/parallel that need raw MPI (and the benchmarks).
  void* native_handle() const { return handle_; }

 private:
  void reset();
  template <typename T>
  void reduce_scatter_pairwise(std::span<const T> send, std::span<T> recv, std::span<const int64_t> counts) const;
  void* handle_ = nullptr;
  bool owned_ = false;
  int rank_ = 0;
  int size_ = 0;
  mutable std::vector<std::byte> scratch_;  // reduce_scatter's received partials, kept between calls
};

// The communicators a rank needs, created once at start from its topology (collective over the
// world: every rank must call it).
struct Comms {
  Comm world;
  Comm attn_tp;  // the ranks of this rank's attention group (all-reduce after o_proj)
  Comm mlp;      // the T ranks of this rank's replica (MLP / MoE sharding, dp_gather / dp_scatter)
  Comm leaders;  // group leaders of the whole world (output gather); null on other ranks

  static Comms create(const Topology& topo);
};

}  // namespace dpserve
