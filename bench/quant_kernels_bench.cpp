// Microbenchmarks of the quantized-weight kernels on the TinyLlama-1.1B shapes, each reported
// as a fraction of a machine limit measured in the same run:
//  * GEMV (decode, M = 1): weight bytes streamed per second over the streaming-read bandwidth
//    (weights cycled through copies far larger than L3, so every product reads DRAM);
//  * GEMM (prefill M = 512, batched decode M = 32): int8 op/s (2 per multiply-add) over the
//    vpdpbusd peak;
//  * quantizing fp32 rows and repacking plain blocks (what loading a model costs), ns per weight.
//
//   OMP_NUM_THREADS=2 build/bin/quant_kernels_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/random_weights.h"
#include "bench/roofline.h"
#include "core/bf16.h"
#include "core/cpu.h"
#include "kernels/isa.h"
#include "kernels/matmul.h"
#include "kernels/matmul_kernel.h"
#include "kernels/qmatmul.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/quant_bf16.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"

namespace dpserve {
namespace {

constexpr int64_t kMiB = int64_t(1) << 20;
const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Timer {
  double t0 = 0, total = 0, best = 1e30;
  void start() { t0 = now_s(); }
  void stop() {
    const double dt = now_s() - t0;
    total += dt;
    best = std::min(best, dt);
  }
  double mean(const benchmark::State& s) const { return total / double(s.iterations()); }
};

// Copies of one weight matrix (plain or repacked) adding up to at least `min_total` bytes.
struct QWeightSet {
  std::vector<uint8_t> plain;
  std::vector<AlignedBytes> copies;
  WeightView base;
  QWeightSet(DType t, int64_t n, int64_t k, bool repacked, int64_t min_total) {
    plain = random_plain(t, n, k);
    WeightView v{plain.data(), t, n, k, k};
    InterleavedWeight x;
    if (repacked) {
      x = interleave(v);
      v = x.view;
    }
    const int64_t bytes = dtype_row_bytes(t, k) * interleaved_rows(t, n);
    const int64_t count = std::max<int64_t>(1, (min_total + bytes - 1) / bytes);
    for (int64_t c = 0; c < count; ++c) {
      copies.emplace_back(size_t(bytes));
      std::memcpy(copies.back().data(), v.data, size_t(repacked ? bytes : dtype_row_bytes(t, k) * n));
    }
    base = v;
  }
  WeightView view(size_t i) const {
    WeightView v = base;
    v.data = copies[i % copies.size()].data();
    return v;
  }
};

// 0 the best level, 1 AVX-512BW, 2 AVX2, 3 AVX-512 VNNI (the Avx512Bf16 level). On an AMX host, 0
// runs the int8 tiles for the types that have them (from 8 rows; fewer rows, and the other types,
// run the VNNI blocks as on 3).
// The level whose int8 blocks run for type t.
const char* int8_level_name(KernelIsa isa, DType t) {
  if (isa != KernelIsa::Amx) return kernel_isa_name(isa);
  return cpu_features().amx_int8 && kernels::amx::qmatmul_has_tiles(t) ? "amx-int8" : "avx512-bf16";
}

KernelIsa isa_arg(int64_t a) {
  return a == 0 ? best_kernel_isa() : a == 1 ? KernelIsa::Avx512 : a == 2 ? KernelIsa::Avx2 : KernelIsa::Avx512Bf16;
}

// The products run on a thread team as in the forward pass, one member per OpenMP thread, so
// they are compared with limits measured on the same threads.
ThreadTeam& bench_team() {
  static ThreadTeam team(omp_get_max_threads());
  return team;
}

void team_matmul(KernelIsa isa, const float* x, int64_t M, int64_t K, const WeightView& w, float* y, int64_t N) {
  ThreadTeam& team = bench_team();
  MatmulJob j;
  j.x = x;
  j.ldx = K;
  j.M = M;
  j.w = w;
  j.y = y;
  j.ldy = N;
  team.run([&](Team& t) { matmul_jobs_isa(isa, t, &j, 1); });
}

void BM_ReadBandwidth(benchmark::State& state) {
  ReadBandwidth bw;
  for (auto _ : state) bw = measure_read_bandwidths();
  state.counters["GB/s"] = bw.best / 1e9;
  state.counters["sustained_GB/s"] = bw.sustained / 1e9;
}

void BM_Int8Peak(benchmark::State& state) {
  double peak = 0;
  for (auto _ : state) peak = measure_int8_peak();
  state.counters["GOP/s"] = peak / 1e9;
}

// One GEMV measure. repacked: *_X16 weights; dram: weights cycled through copies far larger than
// L3 (false: one copy, read from cache: the kernel's compute ceiling); ahead: the software
// prefetch distance in bytes (kernels/qmatmul.h).
void qgemv(benchmark::State& state, DType t, int64_t K, int64_t N, bool repacked, KernelIsa isa, bool dram,
           int64_t ahead, bool l2, int64_t near = kernels::default_quant_weight_prefetch_near()) {
  if (!kernel_isa_supported(isa)) return state.SkipWithError("ISA not supported");
  const QWeightSet ws(t, N, K, repacked, dram ? 512 * kMiB : 0);
  kernels::set_quant_weight_prefetch(ahead, l2);
  kernels::set_quant_weight_prefetch_near(near);
  std::vector<float> x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
  for (int64_t i = 0; i < K; ++i) x[size_t(i)] = float(i % 7) - 3.0f;
  size_t i = 0;
  Timer timer;
  for (auto _ : state) {
    timer.start();
    team_matmul(isa, x.data(), 1, K, ws.view(i++), y.data(), N);
    benchmark::ClobberMemory();
    timer.stop();
  }
  kernels::set_quant_weight_prefetch(kernels::default_quant_weight_prefetch(), kernels::default_quant_weight_prefetch_l2());
  kernels::set_quant_weight_prefetch_near(kernels::default_quant_weight_prefetch_near());
  const ReadBandwidth bws = measure_read_bandwidths();
  const double bw = bws.best;
  const double bytes = double(dtype_row_bytes(t, K) * N);
  const bool default_ahead = ahead == kernels::default_quant_weight_prefetch() &&
                             l2 == kernels::default_quant_weight_prefetch_l2() &&
                             near == kernels::default_quant_weight_prefetch_near();
  state.SetLabel(std::string(dtype_name(t)) + (repacked ? "x16 " : " plain ") +
                 // One row: the VNNI blocks on the Amx level too.
                 int8_level_name(isa == KernelIsa::Amx ? KernelIsa::Avx512Bf16 : isa, t) +
                 (dram ? "" : " in-cache") + (default_ahead ? "" : " ahead " + std::to_string(ahead) + (l2 ? " L2" : " L1") +
                                   (l2 && near > 0 ? " near " + std::to_string(near) : "")));
  state.counters["GB/s"] = bytes / timer.mean(state) / 1e9;
  state.counters["bw_GB/s"] = bw / 1e9;
  state.counters["frac_bw"] = bytes / timer.mean(state) / bw;
  state.counters["best_frac_bw"] = bytes / timer.best / bw;
  // The mean against the sustained read: both include the machine's other tenants.
  state.counters["sustained_frac_bw"] = bws.sustained > 0 ? bytes / timer.mean(state) / bws.sustained : 0;
}

// Args: type, K, N, repacked, isa (0 best, 1 avx512bw, 2 avx2), dram.
void BM_QGemv(benchmark::State& state) {
  qgemv(state, kTypes[state.range(0)], state.range(1), state.range(2), state.range(3) != 0, isa_arg(state.range(4)),
        state.range(5) != 0, kernels::default_quant_weight_prefetch(), kernels::default_quant_weight_prefetch_l2());
}

// Args: type, ahead (bytes; 0: hardware prefetchers only), l2 (prefetcht1, else prefetcht0). The
// FFN's gate shape from DRAM, best ISA.
void BM_QGemvPrefetch(benchmark::State& state) {
  qgemv(state, kTypes[state.range(0)], 2048, 5632, true, best_kernel_isa(), true, state.range(1), state.range(2) != 0, 0);
}

// Args: type, near (bytes; 0: none): the second prefetch into L1 behind the default far one
// (kernels/qmatmul.h), the same shape.
void BM_QGemvPrefetchNear(benchmark::State& state) {
  qgemv(state, kTypes[state.range(0)], 2048, 5632, true, best_kernel_isa(), true, kernels::default_quant_weight_prefetch(),
        kernels::default_quant_weight_prefetch_l2(), state.range(1));
}

// Args: type, M, K, N, isa, dram (1: the weights cycled through >= 512 MiB of copies, read from
// DRAM as a batched decode step or a short prompt reads them).
void BM_QGemm(benchmark::State& state) {
  const DType t = kTypes[state.range(0)];
  const int64_t M = state.range(1), K = state.range(2), N = state.range(3);
  const KernelIsa isa = isa_arg(state.range(4));
  if (!kernel_isa_supported(isa)) return state.SkipWithError("ISA not supported");
  const bool dram = state.range(5) != 0;
  const QWeightSet ws(t, N, K, true, dram ? 512 * kMiB : 0);
  std::vector<float> x(size_t(M * K)), y(size_t(M * N));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> d(-1, 1);
  for (float& v : x) v = d(rng);
  Timer timer;
  size_t i = 0;
  for (auto _ : state) {
    timer.start();
    team_matmul(isa, x.data(), M, K, ws.view(i++), y.data(), N);
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double ops = 2.0 * double(M) * double(N) * double(K);
  const double peak = measure_int8_peak();
  state.SetLabel(std::string(dtype_name(t)) + "x16 " + int8_level_name(isa, t) + (dram ? " dram" : ""));
  state.counters["GOP/s"] = ops / timer.mean(state) / 1e9;
  state.counters["peak_GOP/s"] = peak / 1e9;
  state.counters["frac_peak"] = peak > 0 ? ops / timer.mean(state) / peak : 0;
  state.counters["best_frac_peak"] = peak > 0 ? ops / timer.best / peak : 0;
}

// Load-time work per weight: quantize fp32 rows (one thread), repack plain blocks (all threads).
void BM_Quantize(benchmark::State& state) {
  const DType t = kTypes[state.range(0)];
  const int64_t n = 64 * 256;
  std::vector<float> x(static_cast<size_t>(n));
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (float& v : x) v = g(rng);
  std::vector<uint8_t> out(size_t(dtype_row_bytes(t, n)));
  for (auto _ : state) {
    quantize_row(t, x.data(), out.data(), n);
    benchmark::ClobberMemory();
  }
  state.SetLabel(dtype_name(t));
  state.counters["ns/weight"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate |
                                                                  benchmark::Counter::kInvert);
}

void BM_Repack(benchmark::State& state) {
  const DType t = kTypes[state.range(0)];
  const int64_t n = 2048, k = 2048;
  const std::vector<uint8_t> plain = random_plain(t, n, k);
  for (auto _ : state) {
    InterleavedWeight x = interleave(WeightView{plain.data(), t, n, k, k});
    benchmark::DoNotOptimize(x.bytes.data());
  }
  state.SetLabel(dtype_name(t));
  state.counters["ns/weight"] = benchmark::Counter(double(n * k), benchmark::Counter::kIsIterationInvariantRate |
                                                                      benchmark::Counter::kInvert);
}

// Repacked weights taken to bf16 pairs (kernels/quant_bf16.h), the operand bf16 tiles would
// multiply in place of the int8 codes: each member converts whole groups over all of K, one at a
// time into its own 64 KiB buffer (as a tile kernel would fill a panel that stays in L2), so this
// is the conversion's own cost, to set beside BM_QGemm's product of the same matrix.
void BM_QuantToBf16(benchmark::State& state) {
  const DType t = kTypes[state.range(0)];
  const int64_t K = state.range(1), N = state.range(2);
  const bool dram = state.range(3) != 0;
  const QWeightSet ws(t, N, K, true, dram ? 512 * kMiB : 0);
  const int64_t groups = interleaved_rows(t, N) / 16, group_bytes = dtype_row_bytes(t, K) * 16;
  size_t i = 0;
  for (auto _ : state) {
    const auto* w = static_cast<const uint8_t*>(ws.view(i++).data);
#pragma omp parallel
    {
      std::vector<uint16_t> panel(static_cast<size_t>(16 * K));
#pragma omp for schedule(static)
      for (int64_t g = 0; g < groups; ++g) {
        quant_group_to_bf16(dtype_interleaved(t), w + g * group_bytes, 0, K, panel.data());
        benchmark::DoNotOptimize(panel.data());
      }
    }
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(dtype_name(t)) + "x16 to bf16" + (cpu_features().avx512bf16 ? "" : " (rows)") +
                 (dram ? " dram" : ""));
  state.counters["ns/weight"] = benchmark::Counter(double(N * K), benchmark::Counter::kIsIterationInvariantRate |
                                                                      benchmark::Counter::kInvert);
}

// An estimate of a product of quantized weights on bf16 tiles, from pieces that exist and no new
// kernel: each member takes whole column blocks of 32 weight rows, converts their two groups over
// all of K into its own BF16_X16 panel (quant_group_to_bf16; 128 KiB at K = 2048, so it stays in
// L2) and hands the panel to this ISA's bf16 kernel (find_matmul_kernel(BF16_X16, isa, M): AMX
// tiles where the CPU has them) with the activation rows prepared once, max_rows at a time.
// Beside BM_QGemm of the same shape it says what an opt-in bf16 path could gain or lose here
// (docs/kernels.md, "The folded K types").
void BM_QGemmViaBf16(benchmark::State& state) {
  const DType t = kTypes[state.range(0)];
  const int64_t M = state.range(1), K = state.range(2), N = state.range(3);
  const bool dram = state.range(4) != 0;
  const KernelIsa isa = best_kernel_isa();
  const kernels::MatmulKernel* k = kernels::find_matmul_kernel(DType::BF16_X16, isa, M);
  if (!k || !cpu_features().avx512bf16) return state.SkipWithError("no bf16 kernel with AVX-512 BF16 here");
  const QWeightSet ws(t, N, K, true, dram ? 512 * kMiB : 0);
  std::vector<float> x(size_t(M * K)), y(size_t(M * N));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> d(-1, 1);
  for (float& v : x) v = d(rng);
  const int64_t act_ld = (k->act_row_bytes(K) + 63) / 64 * 64 + 64;  // the driver's stagger
  AlignedBytes act(size_t(M * act_ld));
  const int64_t group_bytes = dtype_row_bytes(t, K) * 16, groups = interleaved_rows(t, N) / 16;
  const int64_t blocks = (groups + 1) / 2;
  ThreadTeam& team = bench_team();
  Timer timer;
  size_t i = 0;
  for (auto _ : state) {
    const auto* w = static_cast<const uint8_t*>(ws.view(i++).data);
    timer.start();
    team.run([&](Team& tm) {
      const Range rows = tm.share(M);
      for (int64_t m = rows.begin; m < rows.end; ++m) k->prepare_row(x.data() + m * K, K, act.data() + m * act_ld);
      tm.barrier();
      thread_local AlignedBytes panel;
      if (panel.size() < size_t(32 * K * 2)) panel = AlignedBytes(size_t(32 * K * 2));
      auto* p = reinterpret_cast<uint16_t*>(panel.data());
      const Range cb = tm.share(blocks);
      for (int64_t b = cb.begin; b < cb.end; ++b) {
        const int64_t g0 = 2 * b, ng = std::min<int64_t>(2, groups - g0);
        for (int64_t g = 0; g < ng; ++g)
          quant_group_to_bf16(dtype_interleaved(t), w + (g0 + g) * group_bytes, 0, K, p + g * 16 * K);
        const int64_t n0 = 16 * g0, nc = std::min<int64_t>(16 * ng, N - n0);
        kernels::MatmulBlockArgs a;
        a.act = act.data(), a.act_ld = act_ld, a.w = WeightView{p, DType::BF16_X16, 16 * ng, K, K};
        a.ldy = N;
        for (int64_t m0 = 0; m0 < M; m0 += k->max_rows) {
          a.y = y.data() + m0 * N + n0;
          k->block(a, m0, std::min(M, m0 + k->max_rows), 0, nc);
        }
      }
    });
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double ops = 2.0 * double(M) * double(N) * double(K);
  state.SetLabel(std::string(dtype_name(t)) + "x16 via bf16, " + k->name + (dram ? " dram" : ""));
  state.counters["GOP/s"] = ops / timer.mean(state) / 1e9;
}

BENCHMARK(BM_ReadBandwidth)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Int8Peak)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// Every type on the FFN shapes; the attention and LM-head shapes at Q4_0; plain vs repacked and
// the other ISA paths at Q4_0 / Q8_0 gate_proj. N = 1024 in cache (1.2 MB at Q4_K): with
// OMP_NUM_THREADS=1 it fits one core's L2 (2 MiB on a Xeon), the kernels' compute ceiling.
BENCHMARK(BM_QGemv)
    ->ArgNames({"type", "K", "N", "x16", "isa", "dram"})
    ->ArgsProduct({{0, 1, 2, 3, 4}, {2048}, {5632}, {1}, {0}, {1}})
    ->ArgsProduct({{0, 1, 2, 4}, {5632}, {2048}, {1}, {0}, {1}})
    ->ArgsProduct({{0, 1, 2, 3, 4}, {2048}, {256}, {1}, {0}, {0}})
    ->ArgsProduct({{0, 2, 4}, {2048}, {1024}, {1}, {0}, {0}})
    ->Args({1, 2048, 2048, 1, 0, 1})
    ->Args({1, 2048, 256, 1, 0, 1})
    ->Args({4, 2048, 32000, 1, 0, 1})
    ->Args({1, 2048, 5632, 0, 0, 1})
    ->Args({0, 2048, 5632, 0, 0, 1})
    ->Args({1, 2048, 5632, 1, 1, 1})
    ->Args({1, 2048, 5632, 1, 2, 1})
    ->Args({0, 2048, 5632, 1, 1, 1})
    ->Args({0, 2048, 5632, 1, 2, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
// The prefetch A/B: every type at each distance (0 = the hardware prefetchers alone), into L1 or L2.
BENCHMARK(BM_QGemvPrefetch)
    ->ArgNames({"type", "ahead", "l2"})
    ->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1024, 2048, 4096, 8192, 16384, 32768}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
// The near prefetch A/B (only where the far one goes into L2: the Intel default).
BENCHMARK(BM_QGemvPrefetchNear)
    ->ArgNames({"type", "near"})
    ->ArgsProduct({{0, 1, 2, 3, 4}, {0, 256, 512, 1024, 2048}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_QGemm)
    ->ArgNames({"type", "M", "K", "N", "isa", "dram"})
    ->ArgsProduct({{0, 1, 2, 4}, {32, 512}, {2048}, {5632}, {0}, {0}})
    ->ArgsProduct({{0, 1, 2, 4}, {512}, {5632}, {2048}, {0}, {0}})
    ->Args({3, 512, 2048, 5632, 0, 0})
    ->Args({1, 512, 2048, 5632, 1, 0})
    ->Args({1, 512, 2048, 5632, 2, 0})
    // The AMX int8 tiles (isa 0 on an AMX host) against VNNI (isa 3) across M: the crossover.
    ->ArgsProduct({{0, 1, 2, 3, 4}, {8, 16, 32, 128, 512}, {2048}, {5632}, {0, 3}, {0}})
    // A batched decode step's or a short prompt's rows, the weights from DRAM.
    ->ArgsProduct({{0, 2, 4}, {8, 16, 32, 66, 128}, {2048}, {5632}, {0}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Quantize)->DenseRange(0, 4)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Repack)->DenseRange(0, 4)->Unit(benchmark::kMillisecond)->UseRealTime();
// Beside BM_QGemm of the same shapes (isa 0).
BENCHMARK(BM_QGemmViaBf16)
    ->ArgNames({"type", "M", "K", "N", "dram"})
    ->ArgsProduct({{0, 2, 4}, {32, 128, 512}, {2048}, {5632}, {0}})
    ->ArgsProduct({{0, 2, 4}, {512}, {5632}, {2048}, {0}})
    ->Args({2, 512, 2048, 5632, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Every type on gate_proj's shape, in cache and from DRAM.
BENCHMARK(BM_QuantToBf16)
    ->ArgNames({"type", "K", "N", "dram"})
    ->ArgsProduct({{0, 1, 2, 3, 4}, {2048}, {5632}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace dpserve

BENCHMARK_MAIN();
