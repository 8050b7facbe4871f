// dp_gather + dp_scatter cost per layer (hidden 2048, fp32) for each padding mode and transport, across
// token distributions, next to raw MPI_Allgather + MPI_Reduce_scatter of the same bytes, and where the
// `auto` rule lands against the best fixed mode. Run under mpirun; prints Markdown tables.
//   mpirun --oversubscribe --allow-run-as-root -np 4 build/bench/dp_gather_bench [--iters N]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "dist/dp_attention.h"

namespace {

using namespace dpserve;

double time_it(const Comm& world, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> batches;
  for (int b = 0; b < 5; ++b) {
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    float dt = float(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
    world.allreduce_max<float>(std::span<float>(&dt, 1));
    batches.push_back(dt);
  }
  std::sort(batches.begin(), batches.end());
  return batches[2];
}

struct Dist {
  const char* name;
  bool prefill;
  std::function<int64_t(int g, int groups)> tokens;
};

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  int iters = 20;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::max(1, std::atoi(argv[i + 1]));
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
      std::printf("| distribution | mode | transport | global rows | dpserve us | raw MPI allgather+reduce_scatter us |\n");
      std::printf("|---|---|---|---|---|---|\n");
    }
    for (const Dist& d : dists) {
      std::vector<int64_t> n(t.groups_per_mlp);
      for (int g = 0; g < t.groups_per_mlp; ++g) n[g] = d.tokens(g, t.groups_per_mlp);
      const int g = t.attn_dp_rank;
      std::vector<float> mine(size_t(n[g] * hidden), 1.0f), out(mine.size());
      double best = 1e30, per_mode[2] = {0, 0};
      for (const Variant& v : variants) {
        DpLayout L(n, t.attn_tp_size, v.mode);
        DpGatherScatter x(comms.mlp, comms.attn_tp, v.tr);
        std::vector<float> global(size_t(L.global_rows() * hidden));
        const double ours = time_it(world, iters, [&] {
          x.gather(L, mine, global, hidden);
          x.scatter(L, global, out, hidden);
        });
        // Raw MPI moving the same bytes: equal blocks covering the global buffer.
        const int64_t blk = (L.global_rows() + w - 1) / w * hidden;
        std::vector<float> ga(static_cast<size_t>(blk * w)), gb(static_cast<size_t>(blk));
        std::vector<int> counts(w, int(blk));
        const double rawt = time_it(world, iters, [&] {
          MPI_Allgather(gb.data(), int(blk), MPI_FLOAT, ga.data(), int(blk), MPI_FLOAT, raw);
          MPI_Reduce_scatter(ga.data(), gb.data(), counts.data(), MPI_FLOAT, MPI_SUM, raw);
        });
        if (v.tr == DpTransport::kGatherScatter) {
          per_mode[v.mode == DpPaddingMode::kMaxLen ? 0 : 1] = ours;
          best = std::min(best, ours);
        }
        if (r == 0)
          std::printf("| %s | %s | %s | %lld | %.1f | %.1f |\n", d.name, to_string(v.mode), to_string(v.tr),
                      (long long)L.global_rows(), ours * 1e6, rawt * 1e6);
      }
      const DpPaddingMode a = choose_padding_mode(DpPaddingRequest::kAuto, n, d.prefill);
      const double at = per_mode[a == DpPaddingMode::kMaxLen ? 0 : 1];
      char line[256];
      std::snprintf(line, sizeof line, "| tp=%d dp=%d | %s | %s | %.1f | %.1f | %.1f | %+.1f%% |\n", tp, dp, d.name,
                    to_string(a), at * 1e6, per_mode[0] * 1e6, per_mode[1] * 1e6, (at - best) / best * 100);
      summary += line;
    }
  }
  if (r == 0) {
    std::printf("\n### auto (SGLang rule) vs best fixed mode, gather_scatter transport, us\n\n");
    std::printf("| layout | distribution | auto picks | auto us | max_len us | sum_len us | auto vs best |\n");
    std::printf("|---|---|---|---|---|---|---|\n%s", summary.c_str());
  }
  return 0;
}
