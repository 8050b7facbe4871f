#include "parallel/comm.h"

// Only the C API is used; skip Open MPI / MPICH C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <type_traits>

#include "core/check.h"
#include "core/sanitized.h"
#include "parallel/job_world.h"
#include "parallel/mpi_listen_hook.h"

namespace dpserve {

namespace {

MPI_Comm as_mpi(void* h) { return static_cast<MPI_Comm>(h); }

template <typename T> MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, bf16_t>) return MPI_UINT16_T;
  else if constexpr (std::is_same_v<T, std::byte>) return MPI_BYTE;
  else if constexpr (std::is_same_v<T, int32_t>) return MPI_INT32_T;
  else if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
  else static_assert(sizeof(T) == 0, "unsupported element type");
}

// bf16 sums: MPI has no bf16 type, so the values travel as uint16 and this op adds them in fp32.
void bf16_sum_fn(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const bf16_t*>(in);
  auto* b = static_cast<bf16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

MPI_Op bf16_sum_op() {
  static MPI_Op op = [] {
    MPI_Op o;
    MPI_Op_create(&bf16_sum_fn, /*commute=*/1, &o);
    return o;
  }();
  return op;
}

template <typename T> MPI_Op sum_op() {
  if constexpr (std::is_same_v<T, bf16_t>) return bf16_sum_op();
  else return MPI_SUM;
}

int to_int(int64_t n, const char* what) {
  if (n < 0 || n > INT_MAX) fail("{}: {} elements do not fit an MPI count (max {})", what, n, INT_MAX);
  return int(n);
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("MPI {} failed: {}", what, std::string(msg, len));
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

}  // namespace

bool launched_under_mpi() {
  for (const char* n : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (env(n)) return true;
  return false;
}

int local_world_size() {
  for (const char* n : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
    if (const char* v = env(n)) return std::max(1, std::atoi(v));
  return 1;
}

bool mpi_initialized() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

namespace {
MPI_Comm g_world = MPI_COMM_WORLD;
}  // namespace

MPI_Comm job_world() { return g_world; }

void set_job_world(MPI_Comm world) { g_world = world; }

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    singleton_ = !launched_under_mpi();
    if (singleton_) {
      // A process no launcher started is a singleton: a one-rank job that talks to no other process
      // (several nodes join only from jobs of their own mpirun: node_join.h). Open MPI would start an
      // orted beside it (~0.15 CPU-s, ~0.3 s of start-up, two TCP listeners) that only MPI_Comm_spawn
      // and connect/accept use, and the TCP and shared-memory transports (one more listener) for peers
      // it has none of. What a user set in the environment wins.
      setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
      setenv("OMPI_MCA_btl", "self", 0);
    }
    {
      // Open MPI's TCP listeners on the job's address only (set by dpserve's launcher).
      MpiListenNarrowing narrow;
      check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    if (provided < MPI_THREAD_FUNNELED) fail("the MPI library does not provide MPI_THREAD_FUNNELED");
    finalize_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

int MpiRuntime::world_rank() const {
  int r = rank_;
  if (mpi_initialized()) MPI_Comm_rank(g_world, &r);
  return r;
}

int MpiRuntime::world_size() const {
  int s = size_;
  if (mpi_initialized()) MPI_Comm_size(g_world, &s);
  return s;
}

MpiRuntime::~MpiRuntime() {
  if (!finalize_ || !mpi_initialized()) return;
  // A singleton ending on an error (an exception unwinds through here: a refused model, a port in
  // use) leaves MPI to the process's end, which main's finish() makes an _exit. It has no peers to
  // tell, and MPI_Finalize of a process that lived a few milliseconds races Open MPI's progress
  // thread, which may not have run yet (the SIGSEGV finish() records). All it leaves behind is Open
  // MPI's session directory for singletons, /tmp/ompi.<host>.<uid>/jf.0/1/0, empty and reused by the
  // next. A launched rank finalizes: mpirun expects it. Sanitizer builds finalize: they end in exit().
  if (singleton_ && std::uncaught_exceptions() > 0 && !kSanitizedBuild) return;
  // Several node jobs joined into one world (node_join.h). MPI_Comm_disconnect would be the clean way
  // out, but with Open MPI 4.1 it waits forever in a PMIx fence across the jobs (tried); so each job
  // finalizes alone, and a write to a peer job's connection that closed first must not end this
  // process with SIGPIPE (it did, exit 141, before this).
  if (g_world != MPI_COMM_WORLD) {
    signal(SIGPIPE, SIG_IGN);
    g_world = MPI_COMM_WORLD;
  }
  MPI_Finalize();
}

void abort_job(const std::string& message, int code) {
  int rank = -1;
  if (mpi_initialized()) MPI_Comm_rank(g_world, &rank);
  if (rank >= 0)
    std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
  else
    std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (rank >= 0) MPI_Abort(g_world, code);
  std::_Exit(code);
}

// ---- Comm ----

Comm::~Comm() { reset(); }

Comm::Comm(Comm&& o) noexcept
    : handle_(o.handle_), owned_(o.owned_), rank_(o.rank_), size_(o.size_), scratch_(std::move(o.scratch_)) {
  o.handle_ = nullptr;
  o.owned_ = false;
}

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    reset();
    handle_ = o.handle_;
    owned_ = o.owned_;
    rank_ = o.rank_;
    size_ = o.size_;
    scratch_ = std::move(o.scratch_);
    o.handle_ = nullptr;
    o.owned_ = false;
  }
  return *this;
}

void Comm::reset() {
  if (handle_ && owned_ && mpi_initialized()) {
    MPI_Comm c = as_mpi(handle_);
    MPI_Comm_free(&c);
  }
  handle_ = nullptr;
  owned_ = false;
}

Comm Comm::world() {
  DP_CHECK(mpi_initialized(), "MPI is not initialised (create an MpiRuntime first)");
  Comm c;
  c.handle_ = g_world;
  MPI_Comm_rank(g_world, &c.rank_);
  MPI_Comm_size(g_world, &c.size_);
  return c;
}

Comm Comm::split(const Comm& parent, int color, int key) {
  DP_CHECK(parent.valid());
  MPI_Comm out = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(as_mpi(parent.handle_), color < 0 ? MPI_UNDEFINED : color, key, &out),
            "MPI_Comm_split");
  Comm c;
  if (out == MPI_COMM_NULL) return c;
  c.handle_ = out;
  c.owned_ = true;
  MPI_Comm_rank(out, &c.rank_);
  MPI_Comm_size(out, &c.size_);
  return c;
}

void Comm::barrier() const { check_mpi(MPI_Barrier(as_mpi(handle_)), "MPI_Barrier"); }

template <typename T> void Comm::allreduce_sum(std::span<T> data) const {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data.data(), to_int(data.size(), "allreduce_sum"), mpi_type<T>(),
                          sum_op<T>(), as_mpi(handle_)),
            "MPI_Allreduce");
}

template <typename T> void Comm::allreduce_max(std::span<T> data) const {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data.data(), to_int(data.size(), "allreduce_max"), mpi_type<T>(),
                          MPI_MAX, as_mpi(handle_)),
            "MPI_Allreduce");
}

template <typename T> void Comm::allgather(std::span<const T> send, std::span<T> recv) const {
  DP_CHECK(recv.size() == send.size() * size_t(size_), "allgather: recv {} != {} x send {}", recv.size(),
           size_, send.size());
  const int n = to_int(send.size(), "allgather");
  check_mpi(MPI_Allgather(send.data(), n, mpi_type<T>(), recv.data(), n, mpi_type<T>(), as_mpi(handle_)),
            "MPI_Allgather");
}

template <typename T>
void Comm::allgatherv(std::span<const T> send, std::span<T> recv, std::span<const int64_t> counts,
                      std::span<const int64_t> displs) const {
  DP_CHECK(counts.size() == size_t(size_) && (displs.empty() || displs.size() == size_t(size_)));
  DP_CHECK(int64_t(send.size()) == counts[rank_], "allgatherv: rank {} sends {} but counts say {}", rank_,
           send.size(), counts[rank_]);
  std::vector<int> c(size_), d(size_);
  int64_t at = 0;
  for (int r = 0; r < size_; ++r) {
    c[r] = to_int(counts[r], "allgatherv");
    const int64_t off = displs.empty() ? at : displs[r];
    d[r] = to_int(off, "allgatherv displacement");
    DP_CHECK(off + counts[r] <= int64_t(recv.size()), "allgatherv: rank {} block overruns recv", r);
    at += counts[r];
  }
  check_mpi(MPI_Allgatherv(send.data(), c[rank_], mpi_type<T>(), recv.data(), c.data(), d.data(), mpi_type<T>(),
                           as_mpi(handle_)),
            "MPI_Allgatherv");
}

template <typename T>
void Comm::allgatherv_inplace(std::span<T> buf, std::span<const int64_t> counts,
                              std::span<const int64_t> displs) const {
  DP_CHECK(counts.size() == size_t(size_) && displs.size() == size_t(size_));
  std::vector<int> c(size_), d(size_);
  for (int r = 0; r < size_; ++r) {
    c[r] = to_int(counts[r], "allgatherv");
    d[r] = to_int(displs[r], "allgatherv displacement");
    DP_CHECK(displs[r] + counts[r] <= int64_t(buf.size()), "allgatherv: rank {} block overruns buffer", r);
  }
  check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf.data(), c.data(), d.data(), mpi_type<T>(),
                           as_mpi(handle_)),
            "MPI_Allgatherv");
}

template <typename T> void Comm::reduce_scatter(std::span<const T> send, std::span<T> recv) const {
  DP_CHECK(send.size() == recv.size() * size_t(size_), "reduce_scatter: send {} != {} x recv {}", send.size(),
           size_, recv.size());
  to_int(recv.size(), "reduce_scatter");
  const std::vector<int64_t> counts(size_t(size_), int64_t(recv.size()));
  reduce_scatter_pairwise<T>(send, recv, counts);
}

template <typename T>
void Comm::reduce_scatter(std::span<const T> send, std::span<T> recv, std::span<const int64_t> counts) const {
  DP_CHECK(counts.size() == size_t(size_));
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    to_int(counts[r], "reduce_scatter");
    total += counts[r];
  }
  DP_CHECK(int64_t(send.size()) == total && int64_t(recv.size()) == counts[rank_],
           "reduce_scatter: send {} (want {}), recv {} (want {})", send.size(), total, recv.size(), counts[rank_]);
  reduce_scatter_pairwise<T>(send, recv, counts);
}

// Why not MPI_Reduce_scatter: Open MPI 4.1's (tuned ring / recursive halving) took 1.5-2x the time of an
// MPI_Allreduce of the same buffer from 1 MiB up on 2 ranks (docs/distributed.md, "reduce-scatter"),
// although it moves half the bytes; MPI_Reduce_scatter_block was slower still. Here every rank posts
// one receive per peer for the peers' partials of its own block and one send per peer of that peer's
// block, then adds the partials itself: each rank sends and receives (size-1)/size of the buffer once,
// with no temporary copy of the whole send buffer. The partials are added in rank order (rank 0's
// first), so a block's sum does not depend on which rank owns it or on arrival order.
template <typename T>
void Comm::reduce_scatter_pairwise(std::span<const T> send, std::span<T> recv, std::span<const int64_t> counts) const {
  const int n = size_;
  std::vector<int64_t> begin(size_t(n), 0);
  for (int r = 1; r < n; ++r) begin[r] = begin[r - 1] + counts[r - 1];
  const size_t mine = size_t(counts[rank_]);
  const T* own = send.data() + begin[rank_];
  if (n == 1) {
    std::copy(own, own + mine, recv.data());
    return;
  }
  // The peers' partials of this rank's block: peer p's in slot p, or p - 1 past this rank.
  if (scratch_.size() < mine * sizeof(T) * size_t(n - 1)) scratch_.resize(mine * sizeof(T) * size_t(n - 1));
  T* parts = reinterpret_cast<T*>(scratch_.data());
  auto slot = [&](int p) { return parts + mine * size_t(p < rank_ ? p : p - 1); };
  auto part = [&](int p) -> const T* { return p == rank_ ? own : slot(p); };
  constexpr int kTag = 0x5253;  // "RS"; no other point-to-point traffic uses this communicator's tag
  const MPI_Comm c = as_mpi(handle_);
  std::vector<MPI_Request> requests;
  requests.reserve(2 * size_t(n - 1));
  for (int k = 1; k < n; ++k) {
    const int from = (rank_ - k + n) % n;  // staggered, so no rank is every peer's first partner
    const int to = (rank_ + k) % n;
    if (mine > 0) {
      requests.emplace_back();
      check_mpi(MPI_Irecv(slot(from), int(mine), mpi_type<T>(), from, kTag, c, &requests.back()), "MPI_Irecv");
    }
    if (counts[to] > 0) {
      requests.emplace_back();
      check_mpi(MPI_Isend(send.data() + begin[to], int(counts[to]), mpi_type<T>(), to, kTag, c, &requests.back()),
                "MPI_Isend");
    }
  }
  check_mpi(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  T* out = recv.data();
  std::copy(part(0), part(0) + mine, out);
  for (int p = 1; p < n; ++p) {
    const T* in = part(p);
    if constexpr (std::is_same_v<T, bf16_t>) {
      for (size_t i = 0; i < mine; ++i) out[i] = f32_to_bf16(bf16_to_f32(out[i]) + bf16_to_f32(in[i]));
    } else {
      for (size_t i = 0; i < mine; ++i) out[i] += in[i];
    }
  }
}

template <typename T> void Comm::broadcast(std::span<T> data, int root) const {
  check_mpi(MPI_Bcast(data.data(), to_int(data.size(), "broadcast"), mpi_type<T>(), root, as_mpi(handle_)),
            "MPI_Bcast");
}

void Comm::gather(std::span<const std::byte> send, std::span<std::byte> recv, int root) const {
  if (rank_ == root)
    DP_CHECK(recv.size() == send.size() * size_t(size_), "gather: recv {} != {} x send {}", recv.size(), size_,
             send.size());
  const int n = to_int(send.size(), "gather");
  check_mpi(MPI_Gather(send.data(), n, MPI_BYTE, recv.data(), n, MPI_BYTE, root, as_mpi(handle_)), "MPI_Gather");
}

std::vector<std::vector<std::byte>> Comm::gatherv(std::span<const std::byte> send, int root) const {
  const int n = to_int(send.size(), "gatherv");
  std::vector<int> counts(rank_ == root ? size_ : 0);
  check_mpi(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, as_mpi(handle_)), "MPI_Gather");
  std::vector<int> displs(counts.size());
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    displs[r] = to_int(total, "gatherv displacement");
    total += counts[r];
  }
  std::vector<std::byte> flat(size_t(to_int(total, "gatherv total")));
  check_mpi(MPI_Gatherv(send.data(), n, MPI_BYTE, flat.data(), counts.data(), displs.data(), MPI_BYTE, root,
                        as_mpi(handle_)),
            "MPI_Gatherv");
  std::vector<std::vector<std::byte>> out;
  if (rank_ != root) return out;
  out.resize(size_);
  for (int r = 0; r < size_; ++r) out[r].assign(flat.begin() + displs[r], flat.begin() + displs[r] + counts[r]);
  return out;
}

template void Comm::allreduce_sum<float>(std::span<float>) const;
template void Comm::allreduce_sum<bf16_t>(std::span<bf16_t>) const;
template void Comm::allreduce_sum<int32_t>(std::span<int32_t>) const;
template void Comm::allreduce_sum<int64_t>(std::span<int64_t>) const;
template void Comm::allreduce_max<float>(std::span<float>) const;
template void Comm::allreduce_max<int32_t>(std::span<int32_t>) const;
template void Comm::allreduce_max<int64_t>(std::span<int64_t>) const;

#define DPSERVE_COMM_MOVE_TYPES(T)                                                                   \
  template void Comm::allgather<T>(std::span<const T>, std::span<T>) const;                          \
  template void Comm::allgatherv<T>(std::span<const T>, std::span<T>, std::span<const int64_t>,      \
                                    std::span<const int64_t>) const;                                 \
  template void Comm::allgatherv_inplace<T>(std::span<T>, std::span<const int64_t>, std::span<const int64_t>) const; \
  template void Comm::broadcast<T>(std::span<T>, int) const;
DPSERVE_COMM_MOVE_TYPES(float)
DPSERVE_COMM_MOVE_TYPES(bf16_t)
DPSERVE_COMM_MOVE_TYPES(std::byte)
DPSERVE_COMM_MOVE_TYPES(int32_t)
DPSERVE_COMM_MOVE_TYPES(int64_t)
#undef DPSERVE_COMM_MOVE_TYPES

template void Comm::reduce_scatter<float>(std::span<const float>, std::span<float>) const;
template void Comm::reduce_scatter<bf16_t>(std::span<const bf16_t>, std::span<bf16_t>) const;
template void Comm::reduce_scatter<float>(std::span<const float>, std::span<float>, std::span<const int64_t>) const;
template void Comm::reduce_scatter<bf16_t>(std::span<const bf16_t>, std::span<bf16_t>,
                                           std::span<const int64_t>) const;

// ---- Comms ----

Comms Comms::create(const Topology& t) {
  Comms c;
  c.world = Comm::world();
  if (c.world.size() != t.world_size || c.world.rank() != t.rank)
    fail("topology was computed for rank {}/{} but this process is rank {}/{} of the MPI world", t.rank,
         t.world_size, c.world.rank(), c.world.size());
  c.attn_tp = Comm::split(c.world, t.attn_dp_rank, t.attn_tp_rank);
  c.mlp = Comm::split(c.world, t.replica, t.mlp_rank);
  c.leaders = Comm::split(c.world, t.is_group_leader ? 0 : -1, t.rank);
  return c;
}

}  // namespace dpserve
