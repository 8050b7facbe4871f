// Cost of each collective of the dist layer at the sizes of one decode step (32 rows x 2048) and one
// prefill step (512 rows x 2048), next to the raw MPI call. Run under mpirun; prints a Markdown table.
//   mpirun --oversubscribe --allow-run-as-root -np 4 build/bench/collectives_bench [--iters N]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "dist/comm.h"

namespace {

using dpserve::Comm;

// Mean seconds per call over `iters` calls, the slowest rank's time, median of 5 batches.
double time_collective(const Comm& world, int iters, const std::function<void()>& fn) {
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

}  // namespace

int main(int argc, char** argv) {
  dpserve::MpiRuntime mpi(&argc, &argv);
  int iters = 20;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::max(1, std::atoi(argv[i + 1]));
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  MPI_Comm raw = static_cast<MPI_Comm>(world.native_handle());
  const int64_t hidden = 2048;
  if (r == 0) {
    std::printf("ranks=%d hidden=%lld iters=%d (time per call, slowest rank, median of 5 batches)\n\n", w,
                (long long)hidden, iters);
    std::printf("| collective | rows x 2048 | dtype | bytes | dpserve us | raw MPI us | GB/s (bytes/time) |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
  }
  for (int64_t rows : {int64_t(32), int64_t(512)}) {
    const int64_t n = rows * hidden;
    const int64_t rows_per_rank = (rows + w - 1) / w;  // equal blocks for gather / scatter
    const int64_t nb = rows_per_rank * hidden;
    std::vector<float> f(size_t(n), 1.0f + r), fa(size_t(nb * w), 0.5f), fb(size_t(nb), 0.0f);
    std::vector<uint16_t> h(size_t(n), dpserve::f32_to_bf16(1.0f));
    const auto row = [&](const char* name, const char* dt, int64_t bytes, double ours, double mpi_s) {
      if (r != 0) return;
      std::printf("| %s | %lld | %s | %lld | %.1f | %s | %.2f |\n", name, (long long)rows, dt, (long long)bytes,
                  ours * 1e6, mpi_s > 0 ? std::to_string(int(mpi_s * 1e6 + 0.5)).c_str() : "-", bytes / ours / 1e9);
    };
    row("allreduce_sum", "fp32", n * 4,
        time_collective(world, iters, [&] { world.allreduce_sum<float>(f); }),
        time_collective(world, iters, [&] {
          MPI_Allreduce(MPI_IN_PLACE, f.data(), int(n), MPI_FLOAT, MPI_SUM, raw);
        }));
    row("allreduce_sum", "bf16", n * 2, time_collective(world, iters, [&] { world.allreduce_sum<uint16_t>(h); }),
        0);
    row("allgather", "fp32", nb * w * 4,
        time_collective(world, iters, [&] { world.allgather<float>(std::span<const float>(fb), fa); }),
        time_collective(world, iters, [&] {
          MPI_Allgather(fb.data(), int(nb), MPI_FLOAT, fa.data(), int(nb), MPI_FLOAT, raw);
        }));
    std::vector<int64_t> counts(w, nb);
    row("allgatherv", "fp32", nb * w * 4,
        time_collective(world, iters, [&] { world.allgatherv<float>(std::span<const float>(fb), fa, counts); }), 0);
    std::vector<int> icounts(w, int(nb));
    row("reduce_scatter (raw: MPI_Reduce_scatter_block)", "fp32", nb * w * 4,
        time_collective(world, iters, [&] { world.reduce_scatter<float>(std::span<const float>(fa), fb); }),
        time_collective(world, iters, [&] {
          MPI_Reduce_scatter_block(fa.data(), fb.data(), int(nb), MPI_FLOAT, MPI_SUM, raw);
        }));
    row("reduce_scatter(counts) (raw: MPI_Reduce_scatter)", "fp32", nb * w * 4,
        time_collective(world, iters, [&] { world.reduce_scatter<float>(std::span<const float>(fa), fb, counts); }),
        time_collective(world, iters, [&] {
          MPI_Reduce_scatter(fa.data(), fb.data(), icounts.data(), MPI_FLOAT, MPI_SUM, raw);
        }));
    row("broadcast", "fp32", n * 4, time_collective(world, iters, [&] { world.broadcast<float>(f, 0); }),
        time_collective(world, iters, [&] { MPI_Bcast(f.data(), int(n), MPI_FLOAT, 0, raw); }));
    std::vector<std::byte> bytes(size_t(nb * 4)), gathered(r == 0 ? size_t(nb * 4 * w) : 0);
    row("gather", "bytes", nb * 4 * w, time_collective(world, iters, [&] { world.gather(bytes, gathered, 0); }), 0);
  }
  return 0;
}
