// Cost of each collective of the parallel layer at the sizes of one decode step (32 rows x 2048) and one
// prefill step (512 rows x 2048), next to the raw MPI call. Run under mpirun; prints a Markdown table.
//   mpirun --oversubscribe --allow-run-as-root -np 4 build/bench/collectives_bench [--iters N] [--reps N] [--rows 32,512,4096]
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
#include <string>
#include <vector>

#include "core/bf16.h"
#include "parallel/comm.h"

namespace {

using dpserve::Comm;

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

}  // namespace

int main(int argc, char** argv) {
  dpserve::MpiRuntime mpi(&argc, &argv);
  int iters = 10, reps = 15;
  std::vector<int64_t> row_sizes = {32, 512};
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--rows") == 0) {  // comma-separated, e.g. 32,512,4096 (a 4096-token prefill)
      row_sizes.clear();
      for (const char* p = argv[i + 1]; *p;) {
        char* end = nullptr;
        const long long v = std::strtoll(p, &end, 10);
        if (end == p || v <= 0) {
          std::fprintf(stderr, "--rows: expected comma-separated positive row counts, got '%s'\n", argv[i + 1]);
          return 2;
        }
        row_sizes.push_back(v);
        p = *end == ',' ? end + 1 : end;
      }
    }
  }
  Comm world = Comm::world();
  const int w = world.size(), r = world.rank();
  MPI_Comm raw = static_cast<MPI_Comm>(world.native_handle());
  const int64_t hidden = 2048;
  if (r == 0) {
    std::printf("ranks=%d hidden=%lld iters=%d reps=%d (us per call, slowest rank; min and median over reps)\n\n", w,
                (long long)hidden, iters, reps);
    std::printf("| collective | rows x 2048 | dtype | bytes | dpserve min | dpserve median | raw MPI call | raw min | raw median |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
  }
  for (int64_t rows : row_sizes) {
    const int64_t n = rows * hidden;
    const int64_t nb = (rows + w - 1) / w * hidden;  // per-rank block of gathers / reduce-scatters
    std::vector<float> f(size_t(n), 1.0f + r), fa(size_t(nb * w), 0.5f), fb(size_t(nb), 0.0f);
    std::vector<uint16_t> h(size_t(n), dpserve::f32_to_bf16(1.0f));
    std::vector<int64_t> counts(w, nb);
    std::vector<int> icounts(w, int(nb));
    std::vector<std::byte> bytes(size_t(nb * 4)), gathered(r == 0 ? size_t(nb * 4 * w) : 0);
    struct Row {
      const char* name;
      const char* dtype;
      int64_t bytes;
      std::function<void()> ours;
      const char* raw_name;
      std::function<void()> raw;
    };
    const std::vector<Row> table = {
        {"allreduce_sum", "fp32", n * 4, [&] { world.allreduce_sum<float>(f); }, "MPI_Allreduce",
         [&] { MPI_Allreduce(MPI_IN_PLACE, f.data(), int(n), MPI_FLOAT, MPI_SUM, raw); }},
        {"allreduce_sum", "bf16", n * 2, [&] { world.allreduce_sum<uint16_t>(h); }, "", nullptr},
        {"allgather", "fp32", nb * w * 4, [&] { world.allgather<float>(std::span<const float>(fb), fa); },
         "MPI_Allgather", [&] { MPI_Allgather(fb.data(), int(nb), MPI_FLOAT, fa.data(), int(nb), MPI_FLOAT, raw); }},
        {"allgatherv", "fp32", nb * w * 4,
         [&] { world.allgatherv<float>(std::span<const float>(fb), fa, counts); }, "", nullptr},
        {"reduce_scatter", "fp32", nb * w * 4,
         [&] { world.reduce_scatter<float>(std::span<const float>(fa), fb); }, "MPI_Reduce_scatter_block",
         [&] { MPI_Reduce_scatter_block(fa.data(), fb.data(), int(nb), MPI_FLOAT, MPI_SUM, raw); }},
        {"reduce_scatter(counts)", "fp32", nb * w * 4,
         [&] { world.reduce_scatter<float>(std::span<const float>(fa), fb, counts); }, "MPI_Reduce_scatter",
         [&] { MPI_Reduce_scatter(fa.data(), fb.data(), icounts.data(), MPI_FLOAT, MPI_SUM, raw); }},
        {"broadcast", "fp32", n * 4, [&] { world.broadcast<float>(f, 0); }, "MPI_Bcast",
         [&] { MPI_Bcast(f.data(), int(n), MPI_FLOAT, 0, raw); }},
        {"gather", "bytes", nb * 4 * w, [&] { world.gather(bytes, gathered, 0); }, "", nullptr},
    };
    std::vector<std::function<void()>> fns;
    for (const Row& row : table) {
      fns.push_back(row.ours);
      if (row.raw) fns.push_back(row.raw);
    }
    const std::vector<Timing> t = measure(world, iters, reps, fns);
    size_t k = 0;
    for (const Row& row : table) {
      const Timing ours = t[k++];
      Timing rawt;
      if (row.raw) rawt = t[k++];
      if (r != 0) continue;
      std::printf("| %s | %lld | %s | %lld | %.1f | %.1f | %s | ", row.name, (long long)rows, row.dtype,
                  (long long)row.bytes, ours.min * 1e6, ours.median * 1e6, row.raw ? row.raw_name : "-");
      if (row.raw)
        std::printf("%.1f | %.1f |\n", rawt.min * 1e6, rawt.median * 1e6);
      else
        std::printf("- | - |\n");
    }
  }
  return 0;
}
