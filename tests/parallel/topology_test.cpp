// Rank layout for the flag combinations SGLang users run, and the errors for impossible ones.
#include "parallel/topology.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/check.h"

namespace dpserve {
namespace {

TopologyConfig cfg(int tp, int dp, bool dpa, int world, int rank = 0) {
  TopologyConfig c;
  c.tp_size = tp;
  c.dp_size = dp;
  c.enable_dp_attention = dpa;
  c.world_size = world;
  c.rank = rank;
  return c;
}

// Expected layout of one rank, written out by hand.
struct RankRow {
  int attn_dp_rank, attn_tp_rank, attn_tp_size;
  bool leader;
  int replica, mlp_rank, mlp_size;
};

struct LayoutCase {
  const char* name;
  int tp, dp;
  bool dpa;
  std::vector<int> leaders;
  std::vector<RankRow> rows;  // one per world rank
};

class TopologyLayout : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(TopologyLayout, EveryRankMatchesTable) {
  const LayoutCase& lc = GetParam();
  const int world = int(lc.rows.size());
  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const Topology t = make_topology(cfg(lc.tp, lc.dp, lc.dpa, world, r));
    const RankRow& e = lc.rows[r];
    EXPECT_EQ(t.attn_dp_rank, e.attn_dp_rank);
    EXPECT_EQ(t.attn_tp_rank, e.attn_tp_rank);
    EXPECT_EQ(t.attn_tp_size, e.attn_tp_size);
    EXPECT_EQ(t.is_group_leader, e.leader);
    EXPECT_EQ(t.replica, e.replica);
    EXPECT_EQ(t.mlp_rank, e.mlp_rank);
    EXPECT_EQ(t.mlp_size, e.mlp_size);
    EXPECT_EQ(t.group_leaders(), lc.leaders);
    EXPECT_EQ(t.world_rank_of(t.attn_dp_rank, t.attn_tp_rank), r);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, TopologyLayout,
    ::testing::Values(
        LayoutCase{"tp6_dp2_dpattn", 6, 2, true, {0, 3},
                   {{0, 0, 3, true, 0, 0, 6}, {0, 1, 3, false, 0, 1, 6}, {0, 2, 3, false, 0, 2, 6},
                    {1, 0, 3, true, 0, 3, 6}, {1, 1, 3, false, 0, 4, 6}, {1, 2, 3, false, 0, 5, 6}}},
        LayoutCase{"tp4_dp4_dpattn", 4, 4, true, {0, 1, 2, 3},
                   {{0, 0, 1, true, 0, 0, 4}, {1, 0, 1, true, 0, 1, 4}, {2, 0, 1, true, 0, 2, 4},
                    {3, 0, 1, true, 0, 3, 4}}},
        LayoutCase{"tp4_dp2_dpattn", 4, 2, true, {0, 2},
                   {{0, 0, 2, true, 0, 0, 4}, {0, 1, 2, false, 0, 1, 4}, {1, 0, 2, true, 0, 2, 4},
                    {1, 1, 2, false, 0, 3, 4}}},
        LayoutCase{"tp2_dp2_replicas", 2, 2, false, {0, 2},
                   {{0, 0, 2, true, 0, 0, 2}, {0, 1, 2, false, 0, 1, 2}, {1, 0, 2, true, 1, 0, 2},
                    {1, 1, 2, false, 1, 1, 2}}},
        LayoutCase{"tp1_dp3_replicas", 1, 3, false, {0, 1, 2},
                   {{0, 0, 1, true, 0, 0, 1}, {1, 0, 1, true, 1, 0, 1}, {2, 0, 1, true, 2, 0, 1}}},
        LayoutCase{"tp4_plain", 4, 1, false, {0},
                   {{0, 0, 4, true, 0, 0, 4}, {0, 1, 4, false, 0, 1, 4}, {0, 2, 4, false, 0, 2, 4},
                    {0, 3, 4, false, 0, 3, 4}}},
        LayoutCase{"single", 1, 1, false, {0}, {{0, 0, 1, true, 0, 0, 1}}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Topology, GroupsPerMlpGroup) {
  EXPECT_EQ(make_topology(cfg(6, 2, true, 6)).groups_per_mlp, 2);
  EXPECT_EQ(make_topology(cfg(4, 4, true, 4)).groups_per_mlp, 4);
  EXPECT_EQ(make_topology(cfg(2, 2, false, 4)).groups_per_mlp, 1);
  EXPECT_EQ(make_topology(cfg(2, 2, false, 4)).num_replicas, 2);
}

TEST(Topology, HeadsSplitOverAttentionRanks) {
  // 8 query heads / 2 KV heads over 4 ranks: 2 query heads each, KV heads replicated twice.
  for (int r = 0; r < 4; ++r) {
    TopologyConfig c = cfg(4, 1, false, 4, r);
    c.n_heads = 8;
    c.n_kv_heads = 2;
    const Topology t = make_topology(c);
    EXPECT_EQ(t.n_heads_local, 2);
    EXPECT_EQ(t.first_head, 2 * r);
    EXPECT_EQ(t.kv_replication, 2);
    EXPECT_EQ(t.n_kv_heads_local, 1);
    EXPECT_EQ(t.first_kv_head, r / 2);
    // The KV head of this rank's first query head (GQA group of 4 query heads) is the one it holds.
    EXPECT_EQ(t.first_head / 4, t.first_kv_head);
  }
  // DP attention tp=4 dp=2: attention split over 2 ranks per group only; 4 KV heads split 2 + 2.
  TopologyConfig c = cfg(4, 2, true, 4, 3);
  c.n_heads = 8;
  c.n_kv_heads = 4;
  const Topology t = make_topology(c);
  EXPECT_EQ(t.n_heads_local, 4);
  EXPECT_EQ(t.first_head, 4);
  EXPECT_EQ(t.n_kv_heads_local, 2);
  EXPECT_EQ(t.first_kv_head, 2);
  EXPECT_EQ(t.kv_replication, 1);
}

TEST(Topology, ExpertsSplitOverEpRanks) {
  // tp=4 ep=2: experts 0-3 on ranks 0,1 (each expert split in two), 4-7 on ranks 2,3.
  const int want_ep[] = {0, 0, 1, 1}, want_moe_tp[] = {0, 1, 0, 1}, want_first[] = {0, 0, 4, 4};
  for (int r = 0; r < 4; ++r) {
    TopologyConfig c = cfg(4, 2, true, 4, r);
    c.ep_size = 2;
    c.num_experts = 8;
    const Topology t = make_topology(c);
    EXPECT_EQ(t.moe_tp_size, 2);
    EXPECT_EQ(t.ep_rank, want_ep[r]);
    EXPECT_EQ(t.moe_tp_rank, want_moe_tp[r]);
    EXPECT_EQ(t.experts_per_rank, 4);
    EXPECT_EQ(t.first_expert, want_first[r]);
  }
}

struct BadCase {
  const char* name;
  TopologyConfig cfg;
  const char* must_mention;  // the flag or fact the message must name
};

class TopologyErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(TopologyErrors, FailsNamingTheFlag) {
  const BadCase& bc = GetParam();
  try {
    make_topology(bc.cfg);
    FAIL() << "accepted an invalid layout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bc.must_mention), std::string::npos) << e.what();
  }
}

TopologyConfig with_model(TopologyConfig c, int heads, int kv, int experts = 0, int ep = 1) {
  c.n_heads = heads;
  c.n_kv_heads = kv;
  c.num_experts = experts;
  c.ep_size = ep;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Table, TopologyErrors,
    ::testing::Values(BadCase{"tp_not_divisible_by_dp", cfg(6, 4, true, 6), "not divisible by --dp-size"},
                      BadCase{"dpattn_world_mismatch", cfg(4, 2, true, 3), "mpirun -np 4"},
                      BadCase{"replicas_world_mismatch", cfg(2, 2, false, 2), "mpirun -np 4"},
                      BadCase{"zero_dp", cfg(2, 0, true, 2), "--dp-size"},
                      BadCase{"zero_tp", cfg(0, 1, false, 1), "--tp-size"},
                      BadCase{"rank_out_of_world", cfg(2, 1, false, 2, 2), "outside an MPI world"},
                      BadCase{"more_ranks_than_heads", with_model(cfg(8, 1, false, 8), 4, 4), "only 4 attention heads"},
                      BadCase{"heads_not_divisible", with_model(cfg(4, 1, false, 4), 6, 6), "6 attention heads"},
                      BadCase{"kv_neither_split_nor_replicated", with_model(cfg(2, 1, false, 2), 6, 3), "3 KV heads"},
                      BadCase{"kv_replication_uneven", with_model(cfg(4, 1, false, 4), 12, 3), "3 KV heads"},
                      BadCase{"ep_not_dividing_tp", with_model(cfg(2, 1, false, 2), 4, 4, 8, 4), "--ep-size 4"},
                      BadCase{"ep_not_dividing_experts", with_model(cfg(6, 1, false, 6), 6, 6, 8, 3), "8 experts"},
                      BadCase{"ep_on_dense_model", with_model(cfg(2, 1, false, 2), 4, 4, 0, 2), "no experts"},
                      BadCase{"heads_not_multiple_of_kv", with_model(cfg(2, 1, false, 2), 8, 3), "num_key_value_heads"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dpserve
