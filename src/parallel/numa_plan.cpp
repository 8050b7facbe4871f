#include "parallel/numa_plan.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>
#include <hwloc.h>

#include "core/check.h"

namespace dpserve {

namespace {

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

TopologyPtr load_topology(const std::string& synthetic) {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) fail("hwloc: cannot initialise a topology");
  TopologyPtr owner(t);
  if (!synthetic.empty()) {
    const bool xml = synthetic.size() > 4 && synthetic.compare(synthetic.size() - 4, 4, ".xml") == 0;
    const int rc = xml ? hwloc_topology_set_xml(t, synthetic.c_str()) : hwloc_topology_set_synthetic(t, synthetic.c_str());
    if (rc != 0) fail("hwloc: cannot use the {} topology '{}'", xml ? "XML" : "synthetic", synthetic);
  }
  if (hwloc_topology_load(t) != 0) fail("hwloc: cannot read this machine's topology");
  return owner;
}

std::vector<int> bitmap_ids(hwloc_const_bitmap_t set) {
  std::vector<int> out;
  for (int id = hwloc_bitmap_first(set); id >= 0; id = hwloc_bitmap_next(set, id)) out.push_back(id);
  return out;
}

// One group of NUMA nodes that ranks are spread over: a NUMA node, or all nodes of a package.
struct Group {
  std::vector<int> domains;
  std::vector<std::vector<int>> cores;
};

int default_threads(int threads, size_t cpus) { return threads > 0 ? threads : std::max(1, int(cpus)); }

}  // namespace

std::vector<int> NumaDomain::cpus() const {
  std::vector<int> out;
  for (auto& c : cores) out.insert(out.end(), c.begin(), c.end());
  std::sort(out.begin(), out.end());
  return out;
}

NodeLayout read_node_layout(const std::string& synthetic) {
  TopologyPtr topo = load_topology(synthetic);
  hwloc_topology_t t = topo.get();
  NodeLayout n;
  n.packages = std::max(1, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE));
  n.cores = std::max(1, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE));
  n.pus = std::max(1, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU));
  const int nodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, unsigned(i));
    NumaDomain d;
    d.index = int(node->logical_index);
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, node);
    d.package = pkg ? int(pkg->logical_index) : 0;
    const int ncores = hwloc_get_nbobjs_inside_cpuset_by_type(t, node->cpuset, HWLOC_OBJ_CORE);
    for (int c = 0; c < ncores; ++c) {
      hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(t, node->cpuset, HWLOC_OBJ_CORE, unsigned(c));
      d.cores.push_back(bitmap_ids(core->cpuset));
    }
    if (d.cores.empty())  // no core objects (some VMs): each PU is its own core
      for (int pu : bitmap_ids(node->cpuset)) d.cores.push_back({pu});
    if (!d.cores.empty()) n.domains.push_back(std::move(d));  // memory-only nodes take no ranks
  }
  return n;
}

NumaRequest parse_numa_flag(const std::string& v) {
  if (v == "auto") return {NumaRequest::kAuto, 0};
  if (v == "none") return {NumaRequest::kNone, 0};
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 1 || n > 4096)
    fail("--numa {}: expected auto, none, or a number of NUMA nodes >= 1", v);
  return {NumaRequest::kCount, int(n)};
}

std::string numa_flag_str(const NumaRequest& r) {
  return r.mode == NumaRequest::kAuto ? "auto" : r.mode == NumaRequest::kNone ? "none" : std::to_string(r.count);
}

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::string s;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return s.empty() ? "none" : s;
}

std::vector<std::string> NumaPlan::describe() const {
  std::vector<std::string> out = {summary};
  if (!bound) return out;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankPlacement& p = ranks[r];
    std::vector<std::string> d;
    for (int x : p.domains) d.push_back(std::to_string(x));
    out.push_back(fmt::format("rank {}: NUMA node{} {}, cpus {}, {} threads", r, d.size() > 1 ? "s" : "",
                              fmt::join(d, ","), format_cpu_list(p.cpus), p.threads));
  }
  return out;
}

NumaPlan plan_numa(const NodeLayout& node, const NumaRequest& req, int ranks, int threads) {
  ranks = std::max(1, ranks);
  const int n_domains = int(node.domains.size());
  NumaPlan plan;
  auto unbound = [&](const std::string& why) {
    plan.bound = false;
    plan.mpirun_args = {"--bind-to", "none"};
    plan.ranks.assign(size_t(ranks), RankPlacement{{}, {}, threads > 0 ? threads : std::max(1, node.pus / ranks)});
    plan.summary = fmt::format("NUMA: {}: ranks not bound (--bind-to none)", why);
    return plan;
  };
  // Which groups of NUMA nodes the ranks are spread over, and Open MPI's name for the group.
  std::vector<Group> groups;
  std::string object = "numa";
  if (req.mode == NumaRequest::kNone) return unbound("--numa none");
  if (req.mode == NumaRequest::kCount) {
    if (req.count > n_domains)
      fail("--numa {}: this machine has {} NUMA node{}; use --numa auto, none, or at most {}", req.count, n_domains,
           n_domains == 1 ? "" : "s", n_domains);
    if (ranks % req.count != 0)
      fail("--numa {}: the {} ranks of this machine cannot be spread evenly over {} NUMA nodes; use a --numa that "
           "divides {} (or auto / none)",
           req.count, ranks, req.count, ranks);
    for (int i = 0; i < req.count; ++i) groups.push_back({{node.domains[size_t(i)].index}, node.domains[size_t(i)].cores});
  } else {
    if (n_domains <= 1) return unbound("--numa auto, 1 NUMA node on this machine");
    if (ranks % n_domains == 0) {
      for (auto& d : node.domains) groups.push_back({{d.index}, d.cores});
    } else if (node.packages > 1 && ranks % node.packages == 0) {
      // Sub-NUMA clusters (several nodes per socket) and fewer ranks than nodes: one group per socket.
      object = "socket";
      groups.resize(size_t(node.packages));
      for (auto& d : node.domains) {
        Group& g = groups[size_t(std::min(d.package, node.packages - 1))];
        g.domains.push_back(d.index);
        g.cores.insert(g.cores.end(), d.cores.begin(), d.cores.end());
      }
    } else {
      return unbound(fmt::format("--numa auto, {} rank{} on this machine do not divide over its {} NUMA nodes ({} "
                                 "socket{})",
                                 ranks, ranks == 1 ? "" : "s", n_domains, node.packages, node.packages == 1 ? "" : "s"));
    }
  }
  const int per_group = ranks / int(groups.size());
  size_t min_cores = groups[0].cores.size();
  for (auto& g : groups) min_cores = std::min(min_cores, g.cores.size());
  const int cores_per_rank = int(min_cores) / per_group;
  plan.bound = true;
  if (per_group == 1) {
    plan.mpirun_args = {"--map-by", fmt::format("ppr:1:{}", object), "--bind-to", object};
  } else if (cores_per_rank < 1) {
    // More ranks than cores: they share their group, and bind themselves (see self_bind).
    plan.self_bind = true;
    plan.mpirun_args = {"--map-by", fmt::format("ppr:{}:{}", per_group, object), "--bind-to", "none"};
  } else {
    plan.mpirun_args = {"--map-by", fmt::format("ppr:{}:{}:PE={}", per_group, object, cores_per_rank), "--bind-to",
                        "core"};
  }
  for (const Group& g : groups)
    for (int j = 0; j < per_group; ++j) {
      RankPlacement p;
      p.domains = g.domains;
      const bool whole = per_group == 1 || cores_per_rank < 1;
      const size_t c0 = whole ? 0 : size_t(j * cores_per_rank);
      const size_t c1 = whole ? g.cores.size() : c0 + size_t(cores_per_rank);
      for (size_t c = c0; c < c1; ++c) p.cpus.insert(p.cpus.end(), g.cores[c].begin(), g.cores[c].end());
      std::sort(p.cpus.begin(), p.cpus.end());
      p.threads = default_threads(threads, p.cpus.size());
      plan.ranks.push_back(std::move(p));
    }
  plan.summary = fmt::format("NUMA: --numa {}: {} rank{} over {} {}{} ({} per {}{}), mpirun {} {} {} {}",
                             numa_flag_str(req), ranks, ranks == 1 ? "" : "s", groups.size(),
                             object == "numa" ? "NUMA node" : "socket", groups.size() == 1 ? "" : "s", per_group,
                             object == "numa" ? "node" : "socket",
                             per_group > 1 && cores_per_rank >= 1 ? fmt::format(", {} cores each", cores_per_rank) : "",
                             plan.mpirun_args[0], plan.mpirun_args[1], plan.mpirun_args[2], plan.mpirun_args[3]);
  if (plan.self_bind) plan.summary += " (more ranks than cores: each rank binds itself to its node)";
  return plan;
}

std::string NumaPlan::rank_cpus_env() const {
  std::string s;
  for (size_t r = 0; r < ranks.size(); ++r) {
    if (r) s += ';';
    s += format_cpu_list(ranks[r].cpus);
  }
  return s;
}

void bind_self_from_env() {
  const char* env = std::getenv("DPSERVE_RANK_CPUS");
  if (!env || !*env) return;
  const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  const int local = lr ? std::atoi(lr) : 0;
  const std::string all = env;
  size_t start = 0;
  for (int r = 0; r < local; ++r) {
    start = all.find(';', start);
    if (start == std::string::npos) fail("DPSERVE_RANK_CPUS={}: no entry for local rank {}", all, local);
    ++start;
  }
  const std::string mine = all.substr(start, all.find(';', start) - start);
  cpu_set_t set;
  CPU_ZERO(&set);
  int n = 0;
  for (size_t i = 0; i < mine.size();) {
    char* end = nullptr;
    const long a = std::strtol(mine.c_str() + i, &end, 10);
    long b = a;
    if (*end == '-') b = std::strtol(end + 1, &end, 10);
    if (end == mine.c_str() + i || a < 0 || b < a || b >= CPU_SETSIZE || (*end && *end != ','))
      fail("DPSERVE_RANK_CPUS={}: malformed CPU list '{}'", all, mine);
    for (long c = a; c <= b; ++c, ++n) CPU_SET(int(c), &set);
    i = size_t(end - mine.c_str()) + (*end ? 1 : 0);
  }
  if (n == 0) fail("DPSERVE_RANK_CPUS={}: empty CPU list for local rank {}", all, local);
  if (sched_setaffinity(0, sizeof set, &set) != 0) fail("cannot bind to cpus {} (DPSERVE_RANK_CPUS)", mine);
}

std::string ProcessBinding::describe(int rank, int threads) const {
  if (!bound) return fmt::format("rank {}: not bound (all {} cpus), {} threads", rank, cpus.size(), threads);
  std::vector<std::string> d;
  for (int x : domains) d.push_back(std::to_string(x));
  return fmt::format("rank {}: NUMA node{} {}, cpus {}, {} threads pinned", rank, d.size() > 1 ? "s" : "",
                     fmt::join(d, ","), format_cpu_list(cpus), threads);
}

ProcessBinding current_binding() {
  ProcessBinding b;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return b;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) b.cpus.push_back(c);
  // hwloc's view of the machine (HWLOC_SYNTHETIC / HWLOC_XMLFILE honoured, as mpirun honours them when
  // it maps the ranks); the NUMA nodes whose CPUs the rank may use.
  TopologyPtr topo = load_topology("");
  hwloc_topology_t t = topo.get();
  const int all = hwloc_bitmap_weight(hwloc_topology_get_topology_cpuset(t));
  b.bound = int(b.cpus.size()) < all;
  const int nodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, unsigned(i));
    for (int c : b.cpus)
      if (hwloc_bitmap_isset(node->cpuset, unsigned(c))) {
        b.domains.push_back(int(node->logical_index));
        break;
      }
  }
  return b;
}

}  // namespace dpserve
