// dp_gather / dp_scatter and the per-step MLP sync between real MPI processes, for every DP-attention
// layout the world size allows, both padding modes, both transports and skewed token distributions.
// Expected buffers are built here from the definitions, without DpLayout.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/check.h"
#include "parallel/dp_attention.h"

namespace dpserve {
namespace {

// Value of column c of row i of group g: distinct for every (g, i, c) used here, exact in fp32.
float row_value(int g, int64_t i, int64_t c) { return float(10000 * g + 64 * i + c + 1); }

struct Layout {
  int tp, dp;
  bool dpa;
};

std::vector<Layout> layouts_for(int w) {
  std::vector<Layout> out = {{w, w, true}, {w, 1, true}};  // one rank per group; one group of w ranks
  if (w == 4) out.insert(out.end(), {{4, 2, true}, {2, 2, false}});
  return out;
}

// Token count of each group for a named distribution.
std::vector<int64_t> distribution(const std::string& name, int groups) {
  std::vector<int64_t> n(groups);
  for (int g = 0; g < groups; ++g) {
    if (name == "balanced") n[g] = 4;
    else if (name == "heavy") n[g] = g == 0 ? 37 : 1;
    else if (name == "idle") n[g] = g == groups - 1 ? 0 : 5;
    else if (name == "uneven") n[g] = (7 * g + 7) % 11;  // 7, 3, 10, 6: not multiples of the group size
    else if (name == "all_idle") n[g] = 0;
    else if (name == "prefill") n[g] = g == 0 ? 301 : 3 * g;
  }
  return n;
}

struct Expected {
  std::vector<float> global;
  std::vector<bool> pad;
  std::vector<int64_t> offset;
};

// The documented layout: SUM_LEN packs groups in order; MAX_LEN gives each group
// attn_tp_size * ceil(max / attn_tp_size) rows, padding rows zero.
Expected expected_global(const std::vector<int64_t>& n, int a, DpPaddingMode mode, int64_t hidden) {
  int64_t max = 0;
  for (int64_t x : n) max = std::max(max, x);
  const int64_t padded = a * ((max + a - 1) / a);
  Expected e;
  int64_t at = 0;
  for (size_t g = 0; g < n.size(); ++g) {
    e.offset.push_back(at);
    const int64_t rows = mode == DpPaddingMode::kMaxLen ? padded : n[g];
    for (int64_t i = 0; i < rows; ++i) {
      e.pad.push_back(i >= n[g]);
      for (int64_t c = 0; c < hidden; ++c) e.global.push_back(i < n[g] ? row_value(int(g), i, c) : 0.0f);
    }
    at += rows;
  }
  return e;
}

struct Case {
  DpPaddingMode mode;
  DpTransport transport;
  const char* dist;
};

class DpGatherScatterMpi : public ::testing::TestWithParam<Case> {};

TEST_P(DpGatherScatterMpi, EveryLayoutGathersAndReducesExactly) {
  const Case pc = GetParam();
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  const int64_t hidden = std::string(pc.dist) == "prefill" ? 64 : 5;
  for (const Layout& lay : layouts_for(w)) {
    SCOPED_TRACE(testing::Message() << "tp=" << lay.tp << " dp=" << lay.dp << " dpa=" << lay.dpa << " rank " << r);
    TopologyConfig c;
    c.tp_size = lay.tp;
    c.dp_size = lay.dp;
    c.enable_dp_attention = lay.dpa;
    c.world_size = w;
    c.rank = r;
    const Topology t = make_topology(c);
    Comms comms = Comms::create(t);
    const int a = t.attn_tp_size, groups = t.groups_per_mlp;
    const int g = t.mlp_rank / a;  // group index inside the MLP group

    const std::vector<int64_t> n = distribution(pc.dist, groups);
    const bool prefill = std::string(pc.dist) == "prefill" && g == 0;
    const StepSync sync = mlp_sync(comms.mlp, t, n[g], prefill);
    ASSERT_EQ(sync.group_tokens, n);
    EXPECT_EQ(sync.any_prefill, std::string(pc.dist) == "prefill");
    bool any = false;
    for (int64_t x : n) any |= x > 0;
    EXPECT_EQ(sync.any_work, any);

    DpLayout L(sync.group_tokens, a, pc.mode);
    const Expected e = expected_global(n, a, pc.mode, hidden);
    ASSERT_EQ(L.global_rows() * hidden, int64_t(e.global.size()));
    for (int64_t q = 0; q < L.global_rows(); ++q) ASSERT_EQ(L.is_padding(q), bool(e.pad[size_t(q)])) << q;

    // Every rank of group g holds all of g's rows, as after the attention all-reduce.
    std::vector<float> mine(size_t(n[g] * hidden));
    for (int64_t i = 0; i < n[g]; ++i)
      for (int64_t col = 0; col < hidden; ++col) mine[size_t(i * hidden + col)] = row_value(g, i, col);

    DpGatherScatter xfer(comms.mlp, comms.attn_tp, pc.transport);
    std::vector<float> global(e.global.size(), -7.0f);
    xfer.gather(L, mine, global, hidden);
    size_t bad = 0;
    for (size_t k = 0; k < global.size(); ++k) bad += global[k] != e.global[k];
    EXPECT_EQ(bad, 0u) << "gathered buffer differs from the expected layout";

    // Partial MLP output of this MLP rank: (mlp_rank + 1) * row value; padding rows hold garbage
    // that must not reach any output row.
    std::vector<float> partial(e.global.size());
    const int m = t.mlp_rank;
    for (size_t k = 0; k < partial.size(); ++k)
      partial[k] = e.pad[k / size_t(hidden)] ? 1.0e6f * float(m + 1) : float(m + 1) * e.global[k];
    std::vector<float> out(size_t(n[g] * hidden), std::numeric_limits<float>::quiet_NaN());
    xfer.scatter(L, partial, out, hidden);
    const float s1 = float(t.mlp_size * (t.mlp_size + 1) / 2);
    bad = 0;
    for (int64_t i = 0; i < n[g]; ++i)
      for (int64_t col = 0; col < hidden; ++col) bad += out[size_t(i * hidden + col)] != s1 * row_value(g, i, col);
    EXPECT_EQ(bad, 0u) << "scattered rows differ from the sum over ranks";
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (DpPaddingMode m : {DpPaddingMode::kMaxLen, DpPaddingMode::kSumLen})
    for (DpTransport tr : {DpTransport::kGatherScatter, DpTransport::kAllReduce})
      for (const char* d : {"balanced", "heavy", "idle", "uneven", "all_idle", "prefill"}) out.push_back({m, tr, d});
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, DpGatherScatterMpi, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  return std::string(to_string(info.param.mode)) + "_" + to_string(info.param.transport) + "_" + info.param.dist;
});

// Several consecutive steps with changing counts and the auto / sglang rules, like a decode loop in which one group
// finishes early: the same communicators and DpGatherScatter object are reused.
TEST(DpAttentionMpi, ConsecutiveStepsWithChosenModes) {
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  TopologyConfig c;
  c.tp_size = w;
  c.dp_size = w / 2 > 0 ? w / 2 : 1;
  c.enable_dp_attention = true;
  c.world_size = w;
  c.rank = r;
  const Topology t = make_topology(c);
  Comms comms = Comms::create(t);
  DpGatherScatter xfer(comms.mlp, comms.attn_tp);
  const int64_t hidden = 3;
  const int g = t.attn_dp_rank;
  for (int step = 0; step < 12; ++step) {
    const int64_t mine_n = g == 0 ? 12 - step : std::max(0, 6 - step);  // group >0 finishes first
    const StepSync sync = mlp_sync(comms.mlp, t, mine_n, step == 0);
    if (!sync.any_work) break;
    const DpPaddingRequest rule = step % 2 ? DpPaddingRequest::kSglang : DpPaddingRequest::kAuto;
    const DpPaddingMode mode = choose_padding_mode(rule, sync.group_tokens, sync.any_prefill, t.attn_tp_size);
    DpLayout L(sync.group_tokens, t.attn_tp_size, mode);
    std::vector<float> mine(size_t(mine_n * hidden));
    for (int64_t i = 0; i < mine_n; ++i)
      for (int64_t col = 0; col < hidden; ++col) mine[size_t(i * hidden + col)] = row_value(g, i + step, col);
    std::vector<float> global(size_t(L.global_rows() * hidden));
    xfer.gather(L, mine, global, hidden);
    for (float& x : global) x *= 2.0f;  // every rank's partial is twice the input
    std::vector<float> out(mine.size());
    xfer.scatter(L, global, out, hidden);
    for (size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], 2.0f * float(w) * mine[k]) << "step " << step;
  }
}

TEST(DpAttentionMpi, SyncRejectsDivergedGroup) {
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  TopologyConfig c;
  c.tp_size = w;
  c.dp_size = 1;
  c.enable_dp_attention = true;
  c.world_size = w;
  c.rank = r;
  const Topology t = make_topology(c);
  Comms comms = Comms::create(t);
  // One group of w ranks; the last rank claims a different count. Every rank sees it and throws.
  try {
    mlp_sync(comms.mlp, t, r == w - 1 ? 5 : 4, false);
    FAIL() << "diverged counts accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dpserve
