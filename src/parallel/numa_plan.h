// NUMA placement (--numa auto|none|N): which NUMA node and CPUs each rank of this machine gets, the
// Open MPI mapping / binding arguments that realise it, and the rank-side view of its own binding.
// The plan is a pure function of the machine's layout (read with hwloc, or a synthetic / XML
// topology in tests) and the flags, so it is tested on topologies this machine does not have.
#pragma once

#include <string>
#include <vector>

namespace dpserve {

// One NUMA node: its hwloc logical index, the package (socket) it belongs to, its cores and PUs
// (operating-system CPU numbers, the ones sched_setaffinity and --report-bindings use).
struct NumaDomain {
  int index = 0;
  int package = 0;
  std::vector<std::vector<int>> cores;  // each core's PUs
  std::vector<int> cpus() const;        // all PUs, in order
};

struct NodeLayout {
  std::vector<NumaDomain> domains;
  int packages = 1;
  int cores = 1;
  int pus = 1;
};

// This machine's layout. `synthetic` = "" reads the real machine (hwloc honours HWLOC_SYNTHETIC /
// HWLOC_XMLFILE in the environment); otherwise a hwloc synthetic description
// ("package:2 numa:1 core:8 pu:2") or, when it names a file ending in .xml, an XML topology.
NodeLayout read_node_layout(const std::string& synthetic = "");

// --numa: auto (bind when the layout allows), none (today's --bind-to none), or N (spread the ranks
// over the first N NUMA nodes; N must divide the ranks and be at most the node count).
struct NumaRequest {
  enum Mode { kAuto, kNone, kCount } mode = kAuto;
  int count = 0;
};
// Throws dpserve::Error naming --numa for anything but auto, none or a positive integer.
NumaRequest parse_numa_flag(const std::string& value);
std::string numa_flag_str(const NumaRequest& r);

struct RankPlacement {
  std::vector<int> domains;  // NUMA nodes (logical indexes) the rank is bound to; empty when not bound
  std::vector<int> cpus;     // PUs the rank is bound to (empty when not bound)
  int threads = 1;
};

struct NumaPlan {
  bool bound = false;
  // More ranks than cores on a node: Open MPI 4.1's --bind-to numa:overload-allowed balances such
  // ranks over all nodes whatever the mapping (seen here: rank 1 of ppr:2:numa bound to node 1), so
  // mpirun only maps them and each rank binds itself to rank_cpus_env() (DPSERVE_RANK_CPUS).
  bool self_bind = false;
  std::vector<std::string> mpirun_args;  // mapping and binding, e.g. {"--map-by", "ppr:1:numa", "--bind-to", "numa"}
  std::vector<RankPlacement> ranks;      // per local rank, in rank order
  std::string summary;                   // one line: what was chosen and why
  std::vector<std::string> describe() const;  // summary, then "rank r: NUMA node n, cpus a-b, T threads"
  std::string rank_cpus_env() const;            // "0-3;4-7;...": each local rank's CPUs
};

// ranks = ranks on this machine; threads = --threads (0 = the rank's CPUs when bound, else PUs / ranks).
// Throws dpserve::Error naming --numa when an explicit N cannot be honoured.
NumaPlan plan_numa(const NodeLayout& node, const NumaRequest& req, int ranks, int threads);

// "0-3,8-11": CPU numbers as ranges.
std::string format_cpu_list(const std::vector<int>& cpus);

// Rank side: the CPUs this process may run on and the NUMA nodes they belong to. `bound` when that
// is fewer than all of the machine's CPUs (mpirun --bind-to, taskset, a cgroup).
struct ProcessBinding {
  bool bound = false;
  std::vector<int> cpus;
  std::vector<int> domains;
  std::string describe(int rank, int threads) const;  // "rank r: NUMA node n, cpus a-b, T threads (pinned)"
};
ProcessBinding current_binding();
// A rank started with DPSERVE_RANK_CPUS (a self_bind plan) binds itself to its local rank's entry
// (OMPI_COMM_WORLD_LOCAL_RANK); call before any thread starts. Throws naming the variable if malformed.
void bind_self_from_env();

}  // namespace dpserve
