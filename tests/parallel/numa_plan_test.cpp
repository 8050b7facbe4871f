// --numa plans on machines this one is not: hwloc's synthetic topologies (and one exported to XML
// and read back) stand for 1-socket, 2-socket and sub-NUMA-cluster servers. Expected CPU lists follow
// from the synthetic numbering (PUs numbered in order, package by package, core by core).
#include <gtest/gtest.h>
#include <hwloc.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/check.h"
#include "parallel/numa_plan.h"

namespace dpserve {
namespace {

using Args = std::vector<std::string>;
const NumaRequest kAuto{NumaRequest::kAuto, 0};
const NumaRequest kNone{NumaRequest::kNone, 0};
NumaRequest count(int n) { return {NumaRequest::kCount, n}; }

std::vector<int> iota(int a, int b) {  // [a, b]
  std::vector<int> v;
  for (int i = a; i <= b; ++i) v.push_back(i);
  return v;
}

// The error message of plan_numa, or "" when it does not throw.
std::string plan_error(const NodeLayout& n, const NumaRequest& r, int ranks) {
  try {
    plan_numa(n, r, ranks, 0);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NumaPlan, ReadsSyntheticLayouts) {
  const NodeLayout two = read_node_layout("package:2 numa:1 core:8 pu:2");
  ASSERT_EQ(two.domains.size(), 2u);
  EXPECT_EQ(two.packages, 2);
  EXPECT_EQ(two.cores, 16);
  EXPECT_EQ(two.pus, 32);
  EXPECT_EQ(two.domains[1].package, 1);
  EXPECT_EQ(two.domains[1].cores.size(), 8u);
  EXPECT_EQ(two.domains[1].cpus(), iota(16, 31));
  const NodeLayout snc = read_node_layout("package:2 numa:2 core:4 pu:1");
  ASSERT_EQ(snc.domains.size(), 4u);
  EXPECT_EQ(snc.domains[2].package, 1);
  EXPECT_EQ(snc.domains[3].cpus(), iota(12, 15));
}

TEST(NumaPlan, OneNumaNodeStaysUnbound) {
  const NodeLayout one = read_node_layout("package:1 numa:1 core:2 pu:1");
  for (int ranks : {1, 2, 4}) {
    const NumaPlan p = plan_numa(one, kAuto, ranks, 0);
    EXPECT_FALSE(p.bound);
    EXPECT_EQ(p.mpirun_args, (Args{"--bind-to", "none"}));
    EXPECT_NE(p.summary.find("1 NUMA node"), std::string::npos) << p.summary;
  }
  // Today's thread count: PUs / ranks.
  EXPECT_EQ(plan_numa(one, kAuto, 2, 0).ranks[1].threads, 1);
  EXPECT_EQ(plan_numa(one, kAuto, 1, 0).ranks[0].threads, 2);
}

TEST(NumaPlan, TwoSocketsOneRankPerNode) {
  const NodeLayout two = read_node_layout("package:2 numa:1 core:8 pu:2");
  const NumaPlan p = plan_numa(two, kAuto, 2, 0);
  ASSERT_TRUE(p.bound);
  EXPECT_EQ(p.mpirun_args, (Args{"--map-by", "ppr:1:numa", "--bind-to", "numa"}));
  ASSERT_EQ(p.ranks.size(), 2u);
  EXPECT_EQ(p.ranks[0].cpus, iota(0, 15));
  EXPECT_EQ(p.ranks[1].cpus, iota(16, 31));
  EXPECT_EQ(p.ranks[1].domains, std::vector<int>{1});
  EXPECT_EQ(p.ranks[0].threads, 16);
  EXPECT_EQ(p.describe().at(2), "rank 1: NUMA node 1, cpus 16-31, 16 threads");
}

TEST(NumaPlan, TwoSocketsSeveralRanksPerNodeGetCores) {
  const NodeLayout two = read_node_layout("package:2 numa:1 core:8 pu:2");
  const NumaPlan p4 = plan_numa(two, kAuto, 4, 0);
  EXPECT_EQ(p4.mpirun_args, (Args{"--map-by", "ppr:2:numa:PE=4", "--bind-to", "core"}));
  // Consecutive ranks share a node (a DP-attention group stays on one socket).
  EXPECT_EQ(p4.ranks[0].cpus, iota(0, 7));
  EXPECT_EQ(p4.ranks[1].cpus, iota(8, 15));
  EXPECT_EQ(p4.ranks[2].cpus, iota(16, 23));
  EXPECT_EQ(p4.ranks[2].domains, std::vector<int>{1});
  EXPECT_EQ(p4.ranks[3].threads, 8);
  EXPECT_FALSE(p4.self_bind);
  const NumaPlan p8 = plan_numa(two, kAuto, 8, 0);
  EXPECT_EQ(p8.mpirun_args, (Args{"--map-by", "ppr:4:numa:PE=2", "--bind-to", "core"}));
  EXPECT_EQ(p8.ranks[7].cpus, iota(28, 31));
  // --threads wins over the CPU count.
  EXPECT_EQ(plan_numa(two, kAuto, 4, 3).ranks[0].threads, 3);
}

TEST(NumaPlan, TwoSocketsRanksThatDoNotDivideStayUnbound) {
  const NodeLayout two = read_node_layout("package:2 numa:1 core:8 pu:2");
  for (int ranks : {1, 3}) {
    const NumaPlan p = plan_numa(two, kAuto, ranks, 0);
    EXPECT_FALSE(p.bound) << ranks;
    EXPECT_EQ(p.mpirun_args, (Args{"--bind-to", "none"}));
  }
  EXPECT_EQ(plan_numa(two, kAuto, 1, 0).ranks[0].threads, 32);
  const NumaPlan none = plan_numa(two, kNone, 2, 0);
  EXPECT_FALSE(none.bound);
  EXPECT_NE(none.summary.find("--numa none"), std::string::npos);
}

TEST(NumaPlan, ExplicitCountUsesTheFirstNodes) {
  const NodeLayout two = read_node_layout("package:2 numa:1 core:8 pu:2");
  const NumaPlan one = plan_numa(two, count(1), 2, 0);
  EXPECT_EQ(one.mpirun_args, (Args{"--map-by", "ppr:2:numa:PE=4", "--bind-to", "core"}));
  EXPECT_EQ(one.ranks[1].cpus, iota(8, 15));
  EXPECT_EQ(plan_numa(two, count(2), 2, 0).mpirun_args, (Args{"--map-by", "ppr:1:numa", "--bind-to", "numa"}));
  // On a 1-NUMA machine, --numa 1 binds each rank to its own cores (auto does not).
  const NodeLayout here = read_node_layout("package:1 numa:1 core:2 pu:1");
  const NumaPlan h = plan_numa(here, count(1), 2, 0);
  EXPECT_EQ(h.mpirun_args, (Args{"--map-by", "ppr:2:numa:PE=1", "--bind-to", "core"}));
  EXPECT_EQ(h.ranks[1].cpus, std::vector<int>{1});
}

TEST(NumaPlan, ExplicitCountErrorsNameTheFlag) {
  const NodeLayout two = read_node_layout("package:2 numa:1 core:8 pu:2");
  const std::string too_many = plan_error(two, count(4), 4);
  EXPECT_NE(too_many.find("--numa 4"), std::string::npos) << too_many;
  EXPECT_NE(too_many.find("2 NUMA nodes"), std::string::npos) << too_many;
  const std::string uneven = plan_error(two, count(2), 3);
  EXPECT_NE(uneven.find("--numa 2"), std::string::npos) << uneven;
  EXPECT_NE(uneven.find("3 ranks"), std::string::npos) << uneven;
}

TEST(NumaPlan, SubNumaClusters) {
  // 2 sockets, 2 NUMA nodes each (SNC2), 4 cores per node.
  const NodeLayout snc = read_node_layout("package:2 numa:2 core:4 pu:1");
  const NumaPlan p4 = plan_numa(snc, kAuto, 4, 0);
  EXPECT_EQ(p4.mpirun_args, (Args{"--map-by", "ppr:1:numa", "--bind-to", "numa"}));
  EXPECT_EQ(p4.ranks[2].cpus, iota(8, 11));
  EXPECT_EQ(p4.ranks[2].domains, std::vector<int>{2});
  // Fewer ranks than nodes but one per socket: bound per socket.
  const NumaPlan p2 = plan_numa(snc, kAuto, 2, 0);
  EXPECT_EQ(p2.mpirun_args, (Args{"--map-by", "ppr:1:socket", "--bind-to", "socket"}));
  EXPECT_EQ(p2.ranks[1].cpus, iota(8, 15));
  EXPECT_EQ(p2.ranks[1].domains, (std::vector<int>{2, 3}));
  EXPECT_EQ(p2.describe().at(1), "rank 0: NUMA nodes 0,1, cpus 0-7, 8 threads");
  const NumaPlan p8 = plan_numa(snc, kAuto, 8, 0);
  EXPECT_EQ(p8.mpirun_args, (Args{"--map-by", "ppr:2:numa:PE=2", "--bind-to", "core"}));
  const NumaPlan p6 = plan_numa(snc, kAuto, 6, 0);
  EXPECT_EQ(p6.mpirun_args, (Args{"--map-by", "ppr:3:socket:PE=2", "--bind-to", "core"}));
  EXPECT_EQ(p6.ranks[3].cpus, (std::vector<int>{8, 9}));
  EXPECT_FALSE(plan_numa(snc, kAuto, 3, 0).bound);
}

TEST(NumaPlan, MoreRanksThanCoresShareTheNode) {
  const NodeLayout tiny = read_node_layout("package:2 numa:1 core:1 pu:1");
  const NumaPlan p = plan_numa(tiny, kAuto, 4, 0);
  // Open MPI 4.1 refuses "--bind-to numa" for 2 processes on a 1-core node, and with
  // ":overload-allowed" binds rank 1 to node 1: the ranks are only mapped and bind themselves.
  EXPECT_TRUE(p.self_bind);
  EXPECT_EQ(p.mpirun_args, (Args{"--map-by", "ppr:2:numa", "--bind-to", "none"}));
  EXPECT_EQ(p.rank_cpus_env(), "0;0;1;1");
  EXPECT_EQ(p.ranks[1].cpus, std::vector<int>{0});
  EXPECT_EQ(p.ranks[2].cpus, std::vector<int>{1});
}

TEST(NumaPlan, ReadsAnXmlTopology) {
  // A 4-node machine written out by hwloc as XML, read back as --numa reads HWLOC_XMLFILE.
  hwloc_topology_t t;
  ASSERT_EQ(hwloc_topology_init(&t), 0);
  ASSERT_EQ(hwloc_topology_set_synthetic(t, "package:4 numa:1 core:2 pu:2"), 0);
  ASSERT_EQ(hwloc_topology_load(t), 0);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("numa_plan_test_" + std::to_string(getpid()) + ".xml")).string();
  ASSERT_EQ(hwloc_topology_export_xml(t, path.c_str(), 0), 0);
  hwloc_topology_destroy(t);
  const NodeLayout n = read_node_layout(path);
  std::filesystem::remove(path);
  ASSERT_EQ(n.domains.size(), 4u);
  const NumaPlan p = plan_numa(n, kAuto, 8, 0);
  EXPECT_EQ(p.mpirun_args, (Args{"--map-by", "ppr:2:numa:PE=1", "--bind-to", "core"}));
  EXPECT_EQ(p.ranks[5].cpus, (std::vector<int>{10, 11}));
}

TEST(NumaPlan, ParsesTheFlag) {
  EXPECT_EQ(parse_numa_flag("auto").mode, NumaRequest::kAuto);
  EXPECT_EQ(parse_numa_flag("none").mode, NumaRequest::kNone);
  EXPECT_EQ(parse_numa_flag("2").count, 2);
  for (const char* bad : {"0", "-1", "two", "", "2x"}) {
    try {
      parse_numa_flag(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--numa"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(format_cpu_list({0, 1, 2, 5, 7, 8}), "0-2,5,7-8");
}

}  // namespace
}  // namespace dpserve
