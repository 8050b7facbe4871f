// Collective cost as a function of bytes, through dpserve's own wrappers (src/parallel/comm.h): the
// input of the alpha-beta network model in bench/netcost_model.py. Sweeps message sizes from a few
// bytes (the step's control broadcast) to prefill hidden states for the four collectives a step
// makes: all-reduce (TP o_proj / MLP), all-gather-v (dp_gather), reduce-scatter with counts
// (dp_scatter) and the byte broadcast (control channel). Prints CSV on rank 0:
//   collective,ranks,bytes,min_us,median_us
//   mpirun -np 2 build/bench/netcost_bench [--reps 9] [--max-bytes 16777216] [--label veth]
// "bytes" is the whole buffer (all-reduce / broadcast payload; the gathered / scattered total).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace {

using dpserve::Comm;

// Slowest rank's mean time per call of `fn`, per round; `iters` calls a round so that a round takes
// at least ~20 ms of work even for tiny messages. Returns {min, median} over rounds in seconds.
std::pair<double, double> measure(const Comm& world, int reps, const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  // Calibrate the calls per round on a shared estimate (every rank must call fn equally often).
  world.barrier();
  auto t0 = std::chrono::steady_clock::now();
  fn();
  float one = float(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  world.allreduce_max<float>(std::span<float>(&one, 1));
  const int iters = std::clamp(int(0.02 / std::max(one, 1e-7f)), 1, 2000);
  std::vector<double> t;
  for (int rep = 0; rep < reps; ++rep) {
    world.barrier();
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    float dt = float(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
    world.allreduce_max<float>(std::span<float>(&dt, 1));
    t.push_back(dt);
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  dpserve::MpiRuntime mpi(&argc, &argv);
  int reps = 9;
  int64_t max_bytes = int64_t(16) << 20;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--max-bytes") == 0) max_bytes = std::atoll(argv[i + 1]);
  }
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  if (r == 0) std::printf("collective,ranks,bytes,min_us,median_us\n");
  for (int64_t bytes = 64; bytes <= max_bytes; bytes *= 4) {
    const int64_t n = bytes / 4;                      // fp32 elements in the whole buffer
    const int64_t nb = std::max<int64_t>(1, n / w);  // per-rank block of the gather / scatter
    if (nb * w != n) continue;                        // sizes are powers of 4: exact for 2 and 4 ranks
    std::vector<float> f(size_t(n), 1.0f + float(r)), all(size_t(nb * w), 0.5f), mine(size_t(nb), 1.0f);
    std::vector<int64_t> counts(size_t(w), nb);
    std::vector<std::byte> ctl(size_t(bytes), std::byte{7});
    const std::vector<std::pair<const char*, std::function<void()>>> rows = {
        {"allreduce", [&] { world.allreduce_sum<float>(f); }},
        {"allgatherv", [&] { world.allgatherv<float>(std::span<const float>(mine), all, counts); }},
        {"reduce_scatter", [&] { world.reduce_scatter<float>(std::span<const float>(all), mine, counts); }},
        {"broadcast", [&] { world.broadcast<std::byte>(ctl, 0); }},
    };
    for (const auto& [name, fn] : rows) {
      // Sums of 1.0f over thousands of repetitions stay finite; reset anyway to keep values tame.
      std::fill(f.begin(), f.end(), 1.0f);
      const auto [mn, med] = measure(world, reps, fn);
      if (r == 0) std::printf("%s,%d,%lld,%.2f,%.2f\n", name, w, (long long)bytes, mn * 1e6, med * 1e6);
      std::fflush(stdout);
    }
  }
  return 0;
}
