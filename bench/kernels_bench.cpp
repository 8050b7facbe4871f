// Microbenchmarks of the kernels, each reported as a fraction of the machine
// limit measured in the same run: the DRAM read bandwidth (a streaming read of
// a buffer much larger than L3) for memory-bound kernels, the bf16 peak (a
// register-only vdpbf16ps loop on every thread) for compute-bound ones.
//
//   build-*/bench/kernels_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "bench/random_weights.h"
#include "bench/roofline.h"
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/attention.h"
#include "kernels/isa.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "kv/kv_codec.h"

namespace dpserve {
namespace {

constexpr int64_t kMiB = int64_t(1) << 20;

template <typename T>
struct AlignedBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit AlignedBuf(size_t count) : n(count) {
    p = static_cast<T*>(std::aligned_alloc(64, (count * sizeof(T) + 63) / 64 * 64));
  }
  ~AlignedBuf() { std::free(p); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Per-iteration wall time: the mean (what a user sees) and the best (robust to
// other processes taking the CPU away on a shared machine; printed as best_*).
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

// --- machine limits ---------------------------------------------------------

void BM_ReadBandwidth(benchmark::State& state) {
  ReadBandwidth bw;
  for (auto _ : state) bw = measure_read_bandwidths();
  state.counters["GB/s"] = bw.best / 1e9;
  state.counters["sustained_GB/s"] = bw.sustained / 1e9;
}

void BM_AmxBf16Peak(benchmark::State& state) {
  if (!kernel_isa_supported(KernelIsa::Amx)) return state.SkipWithError("no AMX (see core/cpu.h)");
  double peak = 0;
  for (auto _ : state) peak = measure_amx_bf16_peak();
  state.counters["GFLOP/s"] = peak / 1e9;
}

// The AMX kernel's 2 x 2 tile loop with its operands in L1 (l2 = 0) or L2 (1): the ceiling of
// the loop itself, against which BM_Gemm's Amx fraction is the driver's blocking and the caches
// beyond L2 (docs/kernels.md, "AMX tiles").
void BM_AmxBf16TileLoop(benchmark::State& state) {
  if (!kernel_isa_supported(KernelIsa::Amx)) return state.SkipWithError("no AMX (see core/cpu.h)");
  double rate = 0;
  for (auto _ : state) rate = measure_amx_bf16_tile_loop(state.range(0) != 0);
  const double peak = measure_amx_bf16_peak();
  state.SetLabel(state.range(0) ? "operands in L2" : "operands in L1");
  state.counters["GFLOP/s"] = rate / 1e9;
  state.counters["frac_peak"] = peak > 0 ? rate / peak : 0;
}

// Whether vector work (the int8 tiles' fp32 steps) runs while the tile unit multiplies: hidden_frac
// is the share of the shorter side that the loop doing both hid (1: all, 0: none).
void BM_AmxInt8BesideVectors(benchmark::State& state) {
  if (!kernel_isa_supported(KernelIsa::Amx)) return state.SkipWithError("no AMX (see core/cpu.h)");
  AmxBesideVectors r;
  for (auto _ : state) r = measure_amx_int8_beside_vectors();
  if (r.tiles_ns == 0) return state.SkipWithError("no AMX-INT8 (see core/cpu.h)");
  state.counters["tiles_ns"] = r.tiles_ns;
  state.counters["vectors_ns"] = r.vectors_ns;
  state.counters["both_ns"] = r.both_ns;
  state.counters["hidden_frac"] = (r.tiles_ns + r.vectors_ns - r.both_ns) / std::min(r.tiles_ns, r.vectors_ns);
}

void BM_Bf16Peak(benchmark::State& state) {
  if (!kernel_isa_supported(KernelIsa::Avx512Bf16)) return state.SkipWithError("no AVX-512 BF16");
  double peak = 0;
  for (auto _ : state) peak = measure_bf16_peak();
  state.counters["GFLOP/s"] = peak / 1e9;
}

// --- matmul ----------------------------------------------------------------

// Enough copies of a bf16 (or f16) weight matrix to exceed L3 several times, cycled so
// every product reads its weights from DRAM, as in decode.
// `form` (the benchmarks' x16 argument): 0 bf16 rows as stored, 1 the BF16_X16 layout the model
// loads bf16 weights into (kernels/repack.h), 2 f16 rows as stored, 3 F16_X16.
struct WeightSet {
  std::vector<std::unique_ptr<AlignedBuf<uint16_t>>> copies;
  std::vector<InterleavedWeight> packed;
  int64_t n, k;
  DType type;
  WeightSet(int64_t n_, int64_t k_, int64_t min_total, int64_t form = 0)
      : n(n_), k(k_), type(form >= 2 ? DType::F16 : DType::BF16) {
    const int64_t bytes = n * k * 2;
    const int64_t count = std::max<int64_t>(1, (min_total + bytes - 1) / bytes);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (int64_t c = 0; c < count; ++c) {
      copies.push_back(std::make_unique<AlignedBuf<uint16_t>>(size_t(n * k)));
      uint16_t* p = copies.back()->p;
      for (int64_t i = 0; i < n * k; ++i) p[i] = type == DType::F16 ? f32_to_f16(d(rng)) : f32_to_bf16(d(rng));
      if (form % 2 == 1) {
        packed.push_back(interleave(WeightView{p, type, n, k, k}));
        copies.back().reset();
      }
    }
  }
  WeightView view(size_t i) const {
    if (!packed.empty()) return packed[i % packed.size()].view;
    return WeightView{copies[i % copies.size()]->p, type, n, k, k};
  }
};

// Weights copied into one region on 2 MiB pages, as the model loads them (model/weight_prep.cpp):
// on 4 KiB pages a stream of many small matrices walks pages the model never walks.
struct HugeRegion {
  AlignedBytes bytes;
  std::vector<WeightView> views;
  explicit HugeRegion(const std::vector<WeightView>& ws) {
    auto bytes_of = [](const WeightView& w) { return size_t(dtype_row_bytes(w.dtype, w.ld) * w.rows); };
    auto padded = [](size_t n) { return (n + 4095) / 4096 * 4096; };  // each matrix on its own pages
    size_t total = 0;
    for (const WeightView& w : ws) total += padded(bytes_of(w));
    constexpr size_t kHuge = size_t(2) << 20;
    bytes = AlignedBytes(total, kHuge);
    ::madvise(bytes.data(), (total + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
    size_t off = 0;
    for (const WeightView& w : ws) {
      std::memcpy(bytes.data() + off, w.data, bytes_of(w));
      WeightView v = w;
      v.data = bytes.data() + off;
      views.push_back(v);
      off += padded(bytes_of(w));
    }
  }
};

KernelIsa bench_isa() { return best_kernel_isa(); }

// The kernels run on a thread team as in the forward pass, one member per OpenMP thread (so
// OMP_NUM_THREADS sets both the team and the threads of the roofline measurements).
ThreadTeam& bench_team() {
  static ThreadTeam team(omp_get_max_threads());
  return team;
}

void team_matmul(const float* x, int64_t M, int64_t K, const WeightView& w, float* y, int64_t N,
                 KernelIsa isa = bench_isa()) {
  MatmulJob j;
  j.x = x;
  j.ldx = K;
  j.M = M;
  j.w = w;
  j.y = y;
  j.ldy = N;
  bench_team().run([&](Team& t) { matmul_jobs_isa(isa, t, &j, 1); });
}

void BM_Gemv(benchmark::State& state) {
  const int64_t K = state.range(0), N = state.range(1);
  const WeightSet ws(N, K, 512 * kMiB, state.range(2));
  std::vector<float> x(K, 0.5f), y(N);
  size_t i = 0;
  Timer timer;
  for (auto _ : state) {
    timer.start();
    team_matmul(x.data(), 1, K, ws.view(i++), y.data(), N);
    benchmark::ClobberMemory();
    timer.stop();
  }
  const ReadBandwidth bws = measure_read_bandwidths();
  const double bw = bws.best;
  const double bytes = double(N * K * 2);
  state.counters["GB/s"] = bytes / timer.mean(state) / 1e9;
  state.counters["bw_GB/s"] = bw / 1e9;
  state.counters["frac_bw"] = bytes / timer.mean(state) / bw;
  state.counters["best_frac_bw"] = bytes / timer.best / bw;
  // The mean against the sustained read: both include the machine's other tenants.
  state.counters["sustained_frac_bw"] = bws.sustained > 0 ? bytes / timer.mean(state) / bws.sustained : 0;
}

// isa: 0 the best level (AMX tiles where the CPU has them), 1 AVX-512 BF16 forced (the A/B of
// the same binary). Fractions are of the peak of the level that ran.
void BM_Gemm(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const KernelIsa isa = state.range(5) == 0 ? bench_isa() : KernelIsa::Avx512Bf16;
  if (!kernel_isa_supported(isa)) return state.SkipWithError("ISA not supported here");
  // dram: weights cycled through >= 512 MiB of copies (read from DRAM, as in a decode step).
  const WeightSet ws(N, K, state.range(4) ? 512 * kMiB : 0, state.range(3));
  std::vector<float> x(M * K), y(M * N);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> d(-1, 1);
  for (float& v : x) v = d(rng);
  Timer timer;
  size_t i = 0;
  for (auto _ : state) {
    timer.start();
    team_matmul(x.data(), M, K, ws.view(i++), y.data(), N, isa);
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double flops = 2.0 * M * N * K;
  const bool f16 = ws.type == DType::F16;
  const bool amx = isa == KernelIsa::Amx && state.range(3) == 1;  // tiles read BF16_X16 only
  const char* roof = "bf16";
  // FMA products: f16 weights at every level, the AVX-512 level's kernels, and the AVX-512 BF16
  // level's (X16 and plain rows alike) where kernels::bf16_fma_products() picks them; AMX tiles
  // have their own peak.
  const bool bf16_level = isa == KernelIsa::Avx512Bf16 || isa == KernelIsa::Amx;
  const bool fma = f16 || isa == KernelIsa::Avx512 || (bf16_level && kernels::bf16_fma_products());
  const double peak = amx ? measure_amx_bf16_peak() : measure_bf16_product_peak(&roof, fma);
  state.SetLabel(amx ? std::string("amx")
                     : std::string(kernel_isa_name(isa == KernelIsa::Amx ? KernelIsa::Avx512Bf16 : isa)) + ", " + roof +
                           " peak");
  state.counters["GFLOP/s"] = flops / timer.mean(state) / 1e9;
  state.counters["peak_GFLOP/s"] = peak / 1e9;
  state.counters["frac_peak"] = peak > 0 ? flops / timer.mean(state) / peak : 0;
  state.counters["best_frac_peak"] = peak > 0 ? flops / timer.best / peak : 0;
}

// The routed experts of an MoE layer's prefill as MoeLayer runs them (model/moe.cpp): T tokens
// each choosing k = 4 of 32 experts (uniform, seeded), every expert's gated gate/up pair as one
// job of a matmul_jobs pass, then the down products added into each token's row in expert order
// (MatmulOrder::ColumnsInJobOrder). Qwen3-MoE-like shapes (hidden 1024, expert FFN 768; the
// generate_bench preset qwen3-moe-bench), in the repacked layout the model loads (BF16_X16, *_X16),
// on 2 MiB pages as it loads them (on 4 KiB pages bf16 ran 1.07x slower); the layers' weights (151
// MB each in bf16) are cycled through four copies, so they come from DRAM as in a prefill.
// isa: as BM_Gemm's (1: AVX-512 BF16 for bf16, VNNI for the quantized types). type: the experts'
// weights, kMoeTypes (bf16, or one block type for all three matrices in its repacked *_X16 form of
// random codes: Q4_K_M models keep gate / up in Q4_K and down in Q4_K or Q6_K).
const DType kMoeTypes[] = {DType::BF16, DType::Q4_K, DType::Q6_K, DType::Q8_0};
void BM_MoeExperts(benchmark::State& state) {
  const int64_t T = state.range(0), E = 32, topk = 4, H = 1024, F = 768, layers = 4;
  const KernelIsa isa = state.range(1) == 0 ? bench_isa() : KernelIsa::Avx512Bf16;
  const DType type = kMoeTypes[state.range(2)];
  if (!kernel_isa_supported(isa)) return state.SkipWithError("ISA not supported here");
  // One matrix of each shape in its repacked form, copied into every expert's place of every layer.
  auto matrix = [&](int64_t rows, int64_t cols) {
    if (type == DType::BF16) {
      WeightSet ws(rows, cols, 0, 1);
      return std::move(ws.packed[0]);
    }
    const std::vector<uint8_t> plain = random_plain(type, rows, cols);
    return interleave(WeightView{plain.data(), type, rows, cols, cols});
  };
  InterleavedWeight gu_w = matrix(F, H), dn_w = matrix(H, F);
  const WeightView gu = gu_w.view, dn = dn_w.view;
  std::vector<WeightView> all;
  for (int64_t i = 0; i < layers * E; ++i) {
    all.push_back(gu);
    all.push_back(gu);
    all.push_back(dn);
  }
  const HugeRegion region(all);
  all = region.views;
  const double layer_bytes =
      double(E) * double(2 * dtype_row_bytes(gu.dtype, gu.ld) * gu.rows + dtype_row_bytes(dn.dtype, dn.ld) * dn.rows);
  gu_w = InterleavedWeight{}, dn_w = InterleavedWeight{};  // the region holds the copies
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> x(T * H), h(T * topk * F), out(T * H);
  for (float& v : x) v = d(rng);
  // Slots in expert order, as MoeLayer::forward lays them out.
  std::vector<std::vector<int32_t>> chosen(E);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> ids(E);
    for (int32_t e = 0; e < E; ++e) ids[e] = e;
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int64_t c = 0; c < topk; ++c) chosen[ids[c]].push_back(int32_t(t));
  }
  std::vector<int32_t> tok;
  std::vector<int64_t> first{0};
  for (const auto& c : chosen) {
    tok.insert(tok.end(), c.begin(), c.end());
    first.push_back(int64_t(tok.size()));
  }
  const std::vector<float> wt(tok.size(), 0.25f);
  Timer timer;
  int64_t layer = 0;
  for (auto _ : state) {
    const int64_t l = layer++ % layers;
    timer.start();
    bench_team().run([&](Team& t) {
      const Range r = t.share(T);
      std::fill(out.begin() + r.begin * H, out.begin() + r.end * H, 0.0f);
      std::vector<MatmulJob> js;
      for (int64_t e = 0; e < E; ++e) {
        MatmulJob j;
        j.x = x.data(), j.ldx = H, j.M = first[e + 1] - first[e], j.rows = tok.data() + first[e];
        j.w = all[3 * (l * E + e)], j.w_up = all[3 * (l * E + e) + 1];
        j.y = h.data() + first[e] * F, j.ldy = F;
        if (j.M) js.push_back(j);
      }
      matmul_jobs_isa(isa, t, js.data(), int64_t(js.size()));
      js.clear();
      for (int64_t e = 0; e < E; ++e) {
        MatmulJob j;
        j.x = h.data() + first[e] * F, j.ldx = F, j.M = first[e + 1] - first[e];
        j.w = all[3 * (l * E + e) + 2];
        j.y = out.data(), j.ldy = H, j.out_rows = tok.data() + first[e], j.scale = wt.data() + first[e];
        j.store = MatmulStore::Add;
        if (j.M) js.push_back(j);
      }
      matmul_jobs_isa(isa, t, js.data(), int64_t(js.size()), MatmulOrder::ColumnsInJobOrder);
    });
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double flops = 2.0 * T * topk * 3 * H * F;
  state.SetLabel(std::string(dtype_name(type)) + " " + (isa == KernelIsa::Amx ? "amx" : kernel_isa_name(isa)));
  state.counters["GFLOP/s"] = flops / timer.mean(state) / 1e9;
  state.counters["best_GFLOP/s"] = flops / timer.best / 1e9;
  state.counters["weights_GB/s"] = layer_bytes / timer.mean(state) / 1e9;
}

// --- attention -------------------------------------------------------------

// A KV pool of n_pages pages of uniform(-1, 1) keys and values, and the pages in shuffled order
// (a sequence's pages scattered over the pool, as the allocator leaves them after a while).
struct RandomKvPool {
  int64_t ps, n_kv, hd;
  AlignedBuf<float> k, v;
  std::vector<int32_t> pages;
  RandomKvPool(int64_t n_pages, int64_t n_kv_heads, int64_t head_dim, int64_t page_size, std::mt19937& rng)
      : ps(page_size), n_kv(n_kv_heads), hd(head_dim), k(n_pages * n_kv * ps * hd), v(k.n), pages(n_pages) {
    std::uniform_real_distribution<float> d(-1, 1);
    for (size_t i = 0; i < k.n; ++i) k.p[i] = d(rng), v.p[i] = d(rng);
    for (int64_t i = 0; i < n_pages; ++i) pages[i] = int32_t(i);
    std::shuffle(pages.begin(), pages.end(), rng);
  }
  KVLayerView view() const { return KVLayerView{k.p, v.p, ps, n_kv, hd}; }
};

// The same pool stored as bf16, int8 or fp8 (one scale per row), encoded as --kv-cache-dtype
// writes it (kv_encode_row).
struct CompactKv {
  std::vector<uint8_t> k, v;
  std::vector<float> ks, vs;
  KVLayerView view;
  CompactKv(const RandomKvPool& p, KVElem e) : view(p.view()) {
    view.elem = e;
    if (e == KVElem::kF32) return;
    const size_t rows = p.k.n / size_t(p.hd), row_bytes = size_t(p.hd * kv_elem_bytes(e));
    k.resize(rows * row_bytes), v.resize(rows * row_bytes), ks.resize(rows), vs.resize(rows);
    for (size_t r = 0; r < rows; ++r) {
      kv_encode_row(e, p.k.p + r * size_t(p.hd), p.hd, k.data() + r * row_bytes, &ks[r]);
      kv_encode_row(e, p.v.p + r * size_t(p.hd), p.hd, v.data() + r * row_bytes, &vs[r]);
    }
    view.k = k.data(), view.v = v.data();
    if (kv_elem_scaled(e)) view.k_scale = ks.data(), view.v_scale = vs.data();
  }
};

// --kv-cache-dtype of the benchmarks' `kv` argument.
KVElem kv_arg(int64_t a) {
  static constexpr KVElem kElems[] = {KVElem::kF32, KVElem::kBF16, KVElem::kInt8, KVElem::kFp8E4M3, KVElem::kFp8E5M2};
  return kElems[a];
}

// Decode step of a batch of `batch` sequences at context `ctx`, TinyLlama-1.1B
// heads (32 query, 4 KV, dim 64), pages of 16 scattered in a pool, the cache stored as
// kv = 0 fp32, 1 bf16, 2 int8, 3 fp8_e4m3, 4 fp8_e5m2.
void BM_AttentionDecode(benchmark::State& state) {
  const int64_t ctx = state.range(0), batch = state.range(1);
  const KVElem elem = kv_arg(state.range(2));
  const int64_t n_heads = 32, n_kv = 4, hd = 64, ps = 16;
  const int64_t pages_per_seq = (ctx + ps - 1) / ps;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-1, 1);
  const RandomKvPool pool(pages_per_seq * batch, n_kv, hd, ps, rng);
  std::vector<AttnSeq> seqs(batch);
  for (int64_t s = 0; s < batch; ++s) seqs[s] = AttnSeq{s, 1, ctx - 1, pool.pages.data() + s * pages_per_seq};
  std::vector<float> q(batch * n_heads * hd), out(q.size());
  for (float& x : q) x = d(rng);
  const CompactKv compact(pool, elem);
  const KVLayerView kv = compact.view;
  const AttnParams p{n_heads, n_kv, hd, 1.0f / 8.0f};
  Timer timer;
  for (auto _ : state) {
    timer.start();
    bench_team().run([&](Team& t) {
      paged_attention(t, q.data(), n_heads * hd, seqs.data(), batch, kv, p, out.data(), n_heads * hd);
    });
    benchmark::ClobberMemory();
    timer.stop();
  }
  const double dt = timer.mean(state);
  const double bytes = double(batch) * ctx * n_kv * (hd * kv_elem_bytes(elem) + (kv_elem_scaled(elem) ? 4 : 0)) * 2;
  const double bw = measure_read_bandwidth();
  state.counters["KV_GB/s"] = bytes / dt / 1e9;
  state.counters["frac_bw"] = bytes / dt / bw;
  state.counters["GFLOP/s"] = double(batch) * ctx * n_heads * hd * 4 / dt / 1e9;
  state.counters["best_GFLOP/s"] = double(batch) * ctx * n_heads * hd * 4 / timer.best / 1e9;
}

// Causal prefill of one sequence of n tokens (TinyLlama-1.1B heads: 32 query heads of 64, g = 8 of
// them a KV head; g = 1 is MLA's decompressed form, a KV head each), its KV already written, the
// cache stored as kv (BM_AttentionDecode's numbering).
// q_scale multiplies the uniform(-1, 1) queries: 64 spreads a row's scores past 87, where exp(x)
// is below the smallest normal float (the softmax then meets the exponentials' zeros).
void attention_prefill(benchmark::State& state, float q_scale) {
  const int64_t n = state.range(0), n_heads = 32, n_kv = n_heads / state.range(2), hd = 64, ps = 16;
  const KVElem elem = kv_arg(state.range(1));
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> d(-1, 1);
  const RandomKvPool pool((n + ps - 1) / ps, n_kv, hd, ps, rng);
  const AttnSeq seq{0, n, 0, pool.pages.data()};
  std::vector<float> q(n * n_heads * hd), out(q.size());
  for (float& x : q) x = d(rng) * q_scale;
  const CompactKv compact(pool, elem);
  const KVLayerView kv = compact.view;
  const AttnParams p{n_heads, n_kv, hd, 1.0f / 8.0f};
  Timer timer;
  for (auto _ : state) {
    timer.start();
    bench_team().run([&](Team& t) { paged_attention(t, q.data(), n_heads * hd, &seq, 1, kv, p, out.data(), n_heads * hd); });
    benchmark::ClobberMemory();
    timer.stop();
  }
  // q.k and p.v over the causal triangle (n (n + 1) / 2 key-query pairs per head).
  const double flops = double(n) * (n + 1) / 2 * n_heads * hd * 4;
  state.counters["GFLOP/s"] = flops / timer.mean(state) / 1e9;
  state.counters["best_GFLOP/s"] = flops / timer.best / 1e9;
}

void BM_AttentionPrefill(benchmark::State& state) { attention_prefill(state, 1.0f); }
void BM_AttentionPrefillWideScores(benchmark::State& state) { attention_prefill(state, 64.0f); }

BENCHMARK(BM_ReadBandwidth)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Bf16Peak)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AmxBf16Peak)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AmxBf16TileLoop)->ArgName("l2")->DenseRange(0, 1)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AmxInt8BesideVectors)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// x16: 0 = bf16 rows as stored, 1 = the BF16_X16 layout the model loads bf16 weights into,
// 2 = f16 rows as stored, 3 = F16_X16 (WeightSet).
BENCHMARK(BM_Gemv)
    ->ArgNames({"K", "N", "x16"})
    ->ArgsProduct({{2048}, {2048, 256, 5632, 32000}, {0, 1}})
    ->Args({5632, 2048, 0})
    ->Args({5632, 2048, 1})
    ->ArgsProduct({{2048}, {5632}, {2, 3}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
// dram = 1: the weights come from DRAM (cycled copies), as a batched decode step reads them
// (M = 66: two row blocks, as 64 sequences make).
BENCHMARK(BM_Gemm)
    ->ArgNames({"M", "K", "N", "x16", "dram", "isa"})
    ->ArgsProduct({{32, 512}, {2048}, {2048, 5632}, {0, 1}, {0}, {0}})
    ->ArgsProduct({{32, 512}, {5632}, {2048}, {0, 1}, {0}, {0}})
    ->ArgsProduct({{32, 512}, {2048}, {5632}, {2, 3}, {0}, {0}})  // f16 rows and F16_X16
    // 128 and 256 rows: a task's activation rows fit L2 beside its weights; at 512 they are read
    // from L3 again by every column block (the Amx level runs 1.2-1.3x faster a thread at 256).
    ->Args({128, 2048, 5632, 1, 0, 0})
    ->Args({256, 2048, 5632, 1, 0, 0})
    ->ArgsProduct({{8, 32, 66}, {2048}, {5632}, {0, 1}, {1}, {0}})
    ->ArgsProduct({{1, 8, 16, 32, 66, 128, 512}, {2048}, {5632}, {1}, {1}, {0, 1}})
    // A decode step of a few sequences, or one verifying drafts: 1..16 rows from DRAM.
    ->ArgsProduct({{2, 4, 5, 8, 9, 12}, {2048}, {5632}, {1}, {1}, {0}})
    ->ArgsProduct({{512}, {2048, 5632}, {2048, 5632}, {1}, {0}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// t: tokens of the prompt (64 rows an expert at 512).
BENCHMARK(BM_MoeExperts)->ArgNames({"t", "isa", "type"})->ArgsProduct({{512, 2048}, {0, 1}, {0, 1, 2, 3}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionPrefill)
    ->ArgNames({"n", "kv", "g"})
    ->ArgsProduct({{512, 2048}, {0, 1}, {8}})
    ->Args({8192, 1, 8})
    // The compact caches (--kv-cache-dtype int8, fp8_e4m3).
    ->ArgsProduct({{2048}, {2, 3}, {8}})
    // Four query heads a KV head (Llama-3-8B, Qwen3-8B, Mistral-7B), two (Qwen3-0.6B / 1.7B), and
    // one (MHA models such as Llama-2-7B and Phi-3; DeepSeek's decompressed MLA keys and values),
    // that also over an int8 cache.
    ->Args({2048, 1, 4})
    ->Args({2048, 1, 2})
    ->Args({2048, 1, 1})
    ->Args({2048, 2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Scores spread past 87 in a row (a key far above the rest): 3.2-3.5x slower on an Intel Xeon
// with AMX while exp512_nonpositive returned subnormals there (docs/kernels.md).
BENCHMARK(BM_AttentionPrefillWideScores)
    ->ArgNames({"n", "kv", "g"})
    ->Args({512, 1, 8})
    ->Args({2048, 1, 8})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AttentionDecode)
    ->ArgNames({"ctx", "batch", "kv"})
    ->Args({512, 1, 0})
    ->Args({2048, 1, 0})
    ->Args({512, 32, 0})
    // Long context per KV dtype (--kv-cache-dtype): fp32, bf16, int8, fp8_e4m3, fp8_e5m2.
    ->ArgsProduct({{8192, 32768}, {1}, {0, 1, 2, 3, 4}})
    // Eight sequences at 32k keys: 268 MB of bf16 cache, from DRAM where one sequence's fits in L3.
    ->Args({32768, 8, 1})
    ->Args({32768, 8, 2})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace dpserve

BENCHMARK_MAIN();
