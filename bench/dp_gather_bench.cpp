// dp_gather + dp_scatter cost per layer (hidden 2048, fp32) for each padding mode and transport, across
// token distributions, next to raw MPI_Allgather + MPI_Reduce_scatter of the same bytes, and where the
// `auto` rule lands against the best fixed mode. Run under mpirun; prints Markdown tables.
//   mpirun --oversubscribe --allow-run-as-root -np 4 build/bench/dp_gather_bench [--iters N]
// Only the C API is used; skip Open MPI / MPICH C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/dp_attention.h"

namespace {

using namespace dpserve;

// Interleaves the candidates (batch of `iters` calls each, `reps` rounds) so that load from other
// processes on a shared machine hits all of them alike; per candidate returns the minimum and the
// median over rounds of the slowest rank's mean time per call.
struct Timing {
  double min = 0, median = 0;
};
std::vector<Timing> measure(const dpserve::Comm& world, int iters, int reps,
                            const std::vector<std::function<void()>>& fns) {
  std::vector<std::vector<double>> t(fns.size());
  for (const auto& fn : fns)
    for (int i = 0; i < 2; ++i) fn();
  for (int rep = 0; rep < reps; ++rep)
    for (size_t k = 0; k < fns.size(); ++k) {
      world.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) fns[k]();
      float dt = float(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
      world.allreduce_max<float>(std::span<float>(&dt, 1));
      t[k].push_back(dt);
    }
  std::vector<Timing> out;
  for (auto& v : t) {
    std::sort(v.begin(), v.end());
    out.push_back({v.front(), v[v.size() / 2]});
  }
  return out;
}

struct Dist {
  const char* name;
  bool prefill;
  std::function<int64_t(int g, int groups)> tokens;
};

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  int iters = 10, reps = 15;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
  }
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  const int64_t hidden = 2048;

  const std::vector<Dist> dists = {
      {"balanced 32/group", false, [](int, int) { return int64_t(32); }},
      {"one heavy (64, rest 8)", false, [](int g, int) { return int64_t(g == 0 ? 64 : 8); }},
      {"one idle (0, rest 32)", false, [](int g, int n) { return int64_t(g == n - 1 ? 0 : 32); }},
      {"skewed (32, rest 1)", false, [](int g, int) { return int64_t(g == 0 ? 32 : 1); }},
      {"prefill balanced 256/group", true, [](int, int) { return int64_t(256); }},
      {"prefill heavy (512, rest 16)", true, [](int g, int) { return int64_t(g == 0 ? 512 : 16); }},
  };
  std::vector<std::pair<int, int>> layouts = {{w, w}};  // (tp, dp) with DP attention
  if (w == 4) layouts.push_back({4, 2});

  struct Variant {
    DpPaddingMode mode;
    DpTransport tr;
  };
  const Variant variants[] = {{DpPaddingMode::kMaxLen, DpTransport::kGatherScatter},
                              {DpPaddingMode::kSumLen, DpTransport::kGatherScatter},
                              {DpPaddingMode::kMaxLen, DpTransport::kAllReduce},
                              {DpPaddingMode::kSumLen, DpTransport::kAllReduce}};

  std::string summary;
  for (auto [tp, dp] : layouts) {
    TopologyConfig c;
    c.tp_size = tp;
    c.dp_size = dp;
    c.enable_dp_attention = true;
    c.world_size = w;
    c.rank = r;
    const Topology t = make_topology(c);
    Comms comms = Comms::create(t);
    MPI_Comm raw = static_cast<MPI_Comm>(comms.mlp.native_handle());
    if (r == 0) {
      std::printf("\n### %d ranks, tp=%d dp=%d (attn_tp_size %d), hidden %lld fp32, gather+scatter per layer, us\n\n",
                  w, tp, dp, t.attn_tp_size, (long long)hidden);
      std::printf("| distribution | mode | transport | global rows | dpserve min | dpserve median | raw MPI same bytes, min |\n");
      std::printf("|---|---|---|---|---|---|---|\n");
    }
    for (const Dist& d : dists) {
      std::vector<int64_t> n(t.groups_per_mlp);
      for (int g = 0; g < t.groups_per_mlp; ++g) n[g] = d.tokens(g, t.groups_per_mlp);
      const int g = t.attn_dp_rank;
      std::vector<float> mine(size_t(n[g] * hidden), 1.0f), out(mine.size());
      std::vector<DpLayout> lay;
      std::vector<std::unique_ptr<DpGatherScatter>> xfer;
      std::vector<std::vector<float>> global, ga, gb;
      std::vector<std::vector<int>> counts;
      std::vector<std::function<void()>> fns;
      for (const Variant& v : variants) {
        lay.emplace_back(n, t.attn_tp_size, v.mode);
        xfer.push_back(std::make_unique<DpGatherScatter>(comms.mlp, comms.attn_tp, v.tr));
        global.emplace_back(size_t(lay.back().global_rows() * hidden));
        // Raw MPI moving the same bytes: equal blocks covering this variant's global buffer.
        const int64_t blk = (lay.back().global_rows() + tp - 1) / tp * hidden;
        ga.emplace_back(size_t(blk * tp));
        gb.emplace_back(size_t(blk));
        counts.emplace_back(size_t(tp), int(blk));
      }
      for (size_t k = 0; k < std::size(variants); ++k) {
        fns.push_back([&, k] {
          xfer[k]->gather(lay[k], mine, global[k], hidden);
          xfer[k]->scatter(lay[k], global[k], out, hidden);
        });
        fns.push_back([&, k] {
          const int blk = counts[k][0];
          MPI_Allgather(gb[k].data(), blk, MPI_FLOAT, ga[k].data(), blk, MPI_FLOAT, raw);
          MPI_Reduce_scatter(ga[k].data(), gb[k].data(), counts[k].data(), MPI_FLOAT, MPI_SUM, raw);
        });
      }
      const std::vector<Timing> tm = measure(world, iters, reps, fns);
      double per_mode[2] = {0, 0};
      for (size_t k = 0; k < std::size(variants); ++k) {
        const Variant& v = variants[k];
        if (v.tr == DpTransport::kGatherScatter) per_mode[v.mode == DpPaddingMode::kMaxLen ? 0 : 1] = tm[2 * k].min;
        if (r == 0)
          std::printf("| %s | %s | %s | %lld | %.1f | %.1f | %.1f |\n", d.name, to_string(v.mode), to_string(v.tr),
                      (long long)lay[k].global_rows(), tm[2 * k].min * 1e6, tm[2 * k].median * 1e6,
                      tm[2 * k + 1].min * 1e6);
      }
      const double best = std::min(per_mode[0], per_mode[1]);
      const auto cost = [&](DpPaddingRequest q) {
        const DpPaddingMode m = choose_padding_mode(q, n, d.prefill, t.attn_tp_size);
        return std::make_pair(m, per_mode[m == DpPaddingMode::kMaxLen ? 0 : 1]);
      };
      const auto [am, at] = cost(DpPaddingRequest::kAuto);
      const auto [sm, st] = cost(DpPaddingRequest::kSglang);
      char line[320];
      std::snprintf(line, sizeof line, "| tp=%d dp=%d | %s | %.1f | %.1f | %s %+.1f%% | %s %+.1f%% |\n", tp, dp, d.name,
                    per_mode[0] * 1e6, per_mode[1] * 1e6, to_string(am), (at - best) / best * 100, to_string(sm),
                    (st - best) / best * 100);
      summary += line;
    }
  }
  if (r == 0) {
    std::printf("\n### auto and sglang rules vs the best fixed mode, gather_scatter transport, min us\n\n");
    std::printf("| layout | distribution | max_len us | sum_len us | auto picks, vs best | sglang picks, vs best |\n");
    std::printf("|---|---|---|---|---|---|\n%s", summary.c_str());
  }
  return 0;
}
