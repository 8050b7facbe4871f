#include "parallel/node_join.h"

#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "parallel/job_world.h"
#include "parallel/rendezvous.h"

namespace dpserve {

namespace {

// Stops this node's job (MPI_Abort on its own MPI_COMM_WORLD: the other nodes' jobs notice the
// broken connection, or fail their own identical check) after printing the reason once per node.
[[noreturn]] void stop(int local_rank, const std::string& msg) {
  if (local_rank == 0) std::fprintf(stderr, "dpserve: %s\n", msg.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

// Bounds the whole join: MPI_Comm_accept / MPI_Comm_connect have no timeout of their own. Runs no MPI
// (the step thread owns MPI); on expiry prints what was missing and ends the process, which makes
// mpirun end this node's job.
class JoinWatch {
 public:
  JoinWatch(double seconds, int local_rank, int nnodes, std::string what) : what_(std::move(what)) {
    thread_ = std::thread([=, this] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; })) return;
      if (local_rank == 0)
        std::fprintf(stderr, "dpserve: %s: %d of %d nodes had joined after %g s (--dist-timeout)\n", what_.c_str(),
                     joined.load(), nnodes, seconds);
      std::fflush(stderr);
      std::_Exit(1);
    });
  }
  ~JoinWatch() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::atomic<int> joined{0};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string what_;
  std::thread thread_;
};

// After a merge: every rank's (node rank, flags) from every rank; the first mismatch stops the job.
void check_flags(MPI_Comm merged, int local_rank, int node_rank, int nnodes, const NodeFlagValues& flags) {
  int size = 0;
  MPI_Comm_size(merged, &size);
  const int w = int(flags.size()) + 2;
  std::vector<int64_t> mine = {node_rank, nnodes};
  for (const auto& f : flags) mine.push_back(f.second);
  std::vector<int64_t> all(size_t(size) * size_t(w));
  MPI_Allgather(mine.data(), w, MPI_INT64_T, all.data(), w, MPI_INT64_T, merged);
  // Rank 0 of the merged communicator is node 0's rank 0 (node 0 is always the low side).
  const int64_t* ref = all.data();
  for (int r = 0; r < size; ++r) {
    const int64_t* v = all.data() + size_t(r) * size_t(w);
    if (v[1] != ref[1])
      stop(local_rank, fmt::format("node {} was started with --nnodes {} but node 0 with --nnodes {}: give every "
                                   "node the same --nnodes", v[0], v[1], ref[1]));
    for (size_t i = 0; i < flags.size(); ++i)
      if (v[i + 2] != ref[i + 2])
        stop(local_rank, fmt::format("node {} was started with {} {} but node 0 with {} {}: every node needs the "
                                     "same {}", v[0], flags[i].first, v[i + 2], flags[i].first, ref[i + 2],
                                     flags[i].first));
  }
  // A node rank given twice (two nodes with --node-rank 1): each node's ranks are consecutive.
  int local = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &local);
  for (int a = 0; a < size; a += local)
    for (int b = a + local; b < size; b += local)
      if (all[size_t(a) * size_t(w)] == all[size_t(b) * size_t(w)])
        stop(local_rank, fmt::format("two nodes were started with --node-rank {}: give each node its own "
                                     "--node-rank 0..{}", all[size_t(a) * size_t(w)], nnodes - 1));
}

// Folds the nodes on the far side of `inter` into `merged` (the accepting side orders first, so
// ranks follow node rank), frees what it replaces, and checks the newcomers' flags.
void merge_nodes(MPI_Comm inter, bool high, MPI_Comm& merged, int local_rank, const NodeJoinOptions& o,
                 const NodeFlagValues& flags) {
  MPI_Comm next = MPI_COMM_NULL;
  MPI_Intercomm_merge(inter, high ? 1 : 0, &next);
  MPI_Comm_free(&inter);
  MPI_Comm_free(&merged);
  merged = next;
  check_flags(merged, local_rank, o.node_rank, o.nnodes, flags);
}

}  // namespace

void join_nodes(const NodeJoinOptions& o, const NodeFlagValues& must_match) {
  if (o.nnodes <= 1) return;
  const HostPort addr = parse_host_port(o.dist_init_addr, "--dist-init-addr");
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &local_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &local_size);
  NodeFlagValues flags = must_match;
  flags.emplace_back("ranks per node", local_size);
  JoinWatch watch(o.timeout_seconds, local_rank, o.nnodes,
                  o.node_rank == 0 ? fmt::format("node 0 waited for {} nodes at {}", o.nnodes, addr.str())
                                   : fmt::format("node {} could not join node 0 at {}", o.node_rank, addr.str()));

  char port[MPI_MAX_PORT_NAME] = {0};
  MPI_Comm merged = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &merged);
  if (o.node_rank == 0) {
    if (local_rank == 0) {
      MPI_Open_port(MPI_INFO_NULL, port);
      rendezvous_set(addr, o.secret, "mpi_port", port, o.timeout_seconds);
    }
  } else {
    // Connect as one group (this node's ranks), then merge on the high side: node 0 stays rank 0.
    if (local_rank == 0) {
      const std::string p = rendezvous_get(addr, o.secret, "mpi_port", o.timeout_seconds, "--dist-timeout");
      std::snprintf(port, sizeof port, "%s", p.c_str());
    }
    MPI_Comm inter = MPI_COMM_NULL;
    MPI_Comm_connect(port, MPI_INFO_NULL, 0, MPI_COMM_WORLD, &inter);
    merge_nodes(inter, /*high=*/true, merged, local_rank, o, flags);
  }
  // Everyone already joined accepts the next node, until all are in (each accept is collective over
  // the nodes joined so far; a later node's connect waits for it).
  int size = 0;
  MPI_Comm_size(merged, &size);
  watch.joined = size / local_size;
  while (size < o.nnodes * local_size) {
    MPI_Comm inter = MPI_COMM_NULL;
    MPI_Comm_accept(port, MPI_INFO_NULL, 0, merged, &inter);
    merge_nodes(inter, /*high=*/false, merged, local_rank, o, flags);
    MPI_Comm_size(merged, &size);
    watch.joined = size / local_size;
  }
  if (o.node_rank == 0 && local_rank == 0) MPI_Close_port(port);
  // Nodes joined in arrival order; the job's ranks go by node rank.
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm_split(merged, 0, o.node_rank * local_size + local_rank, &world);
  MPI_Comm_free(&merged);
  set_job_world(world);
}

void check_nodes_agree(const NodeJoinOptions& o, const NodeFlagValues& values) {
  if (o.nnodes <= 1) return;
  MPI_Comm world = job_world();
  int size = 0, local_rank = 0, local_size = 1;
  MPI_Comm_size(world, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &local_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &local_size);
  const int w = int(values.size());
  std::vector<int64_t> mine;
  for (const auto& v : values) mine.push_back(v.second);
  std::vector<int64_t> all(size_t(size) * size_t(w));
  MPI_Allgather(mine.data(), w, MPI_INT64_T, all.data(), w, MPI_INT64_T, world);
  auto show = [&](size_t i, int64_t v) {
    const std::string& name = values[i].first;
    return name.size() >= 6 && name.compare(name.size() - 6, 6, "digest") == 0 ? fmt::format("{:016x}", uint64_t(v))
                                                                               : std::to_string(v);
  };
  for (int r = 0; r < size; ++r)
    for (size_t i = 0; i < values.size(); ++i)
      if (all[size_t(r) * size_t(w) + i] != all[i])
        stop(local_rank, fmt::format("node {} does not run the same model and layout as node 0: its {} is {} but node "
                                     "0's is {}; give every node the same model files and flags",
                                     r / local_size, values[i].first, show(i, all[size_t(r) * size_t(w) + i]),
                                     show(i, all[i])));
}

}  // namespace dpserve
