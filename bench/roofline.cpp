// Machine limits measured in the same run as the figures they scale.
#include "bench/roofline.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>

#include "core/cpu.h"

namespace dpserve {

namespace {
constexpr int64_t kMiB = int64_t(1) << 20;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename T>
struct AlignedBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit AlignedBuf(size_t count) : n(count) {
    p = static_cast<T*>(std::aligned_alloc(64, (count * sizeof(T) + 63) / 64 * 64));
  }
  ~AlignedBuf() { std::free(p); }
};
}  // namespace

// The int32 sum of n bytes (n a multiple of 256) read as 512-bit or 256-bit vectors.
__attribute__((target("avx512f"))) static int64_t read_sum_avx512(const char* p, int64_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 256) {
    a0 = _mm512_add_epi32(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi32(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi32(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi32(a3, _mm512_load_si512(p + i + 192));
  }
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  int64_t s = 0;
  for (int32_t v : lanes) s += v;
  return s;
}

// AVX2 machines (AMD EPYC up to Zen 3, older Xeons) read with 256-bit loads, eight per 256 bytes.
__attribute__((target("avx2"))) static int64_t read_sum_avx2(const char* p, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 128) {
    a0 = _mm256_add_epi32(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi32(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi32(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi32(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi32(_mm256_add_epi32(a0, a1),
                                                                         _mm256_add_epi32(a2, a3)));
  int64_t s = 0;
  for (int32_t v : lanes) s += v;
  return s;
}

// Streaming read on all threads, in bytes/s: the best slice, and all slices together.
ReadBandwidth measure_read_bandwidths() {
  const bool wide = __builtin_cpu_supports("avx512f");
  if (!wide && !__builtin_cpu_supports("avx2")) return {};
  // Allocated per call and freed after, so the 1 GiB does not count in a later RSS figure.
  AlignedBuf<char> buf(size_t(1024) * kMiB);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(buf.n); i += 4096) std::fill(buf.p + i, buf.p + std::min<int64_t>(i + 4096, buf.n), char(i));
  // Best of many ~128 MiB slices, read in order, so each was last touched 1 GiB of reads ago
  // (more than any L3: this Xeon's 480 MiB is the whole socket's): on a shared machine the
  // shortest passes are the ones nobody else interrupted.
  constexpr int64_t kSlice = 128 * kMiB;
  const double slice_bytes = double(kSlice / omp_get_max_threads() / 256 * 256 * omp_get_max_threads());
  double best = 0, bytes = 0, seconds = 0;
  for (int rep = 0; rep < 2; ++rep)
    for (int64_t off = 0; off + kSlice <= int64_t(buf.n); off += kSlice) {
      int64_t sink = 0;
      const double t0 = now_s();
#pragma omp parallel reduction(+ : sink)
      {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t per = kSlice / nt / 256 * 256;
        const char* p = buf.p + off + id * per;
        sink += wide ? read_sum_avx512(p, per) : read_sum_avx2(p, per);
      }
      const double dt = now_s() - t0;
      __asm__ volatile("" : : "r"(&sink) : "memory");
      best = std::max(best, slice_bytes / dt);
      bytes += slice_bytes;
      seconds += dt;
    }
  return {best, seconds > 0 ? bytes / seconds : 0};
}

double measure_read_bandwidth() { return measure_read_bandwidths().best; }

namespace {

// The best of `reps` runs (each a few ms) of `chains(iters, thread)` on every OpenMP thread, in
// ops/s: `ops_per_iter` is one thread's work per iteration. Best of many, as for the bandwidth.
// `chains` runs independent multiply-add chains in registers and returns their sum, which is kept.
double best_parallel_rate(int reps, int64_t iters, double ops_per_iter, double (*chains)(int64_t, int)) {
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    double sink = 0;
    const double t0 = now_s();
#pragma omp parallel reduction(+ : sink)
    sink += chains(iters, omp_get_thread_num());
    const double dt = now_s() - t0;
    __asm__ volatile("" : : "r"(&sink) : "memory");
    best = std::max(best, double(iters) * ops_per_iter * omp_get_max_threads() / dt);
  }
  return best;
}

// 12 vdpbf16ps chains: 12 x 32 products of 2 flop an iteration.
__attribute__((target("avx512f,avx512bf16"))) double bf16_chains(int64_t iters, int thread) {
  __m512bh x = (__m512bh)_mm512_set1_epi16(short(0x3f80 + thread));
  __m512bh y = (__m512bh)_mm512_set1_epi16(short(0x3f00));
  __m512 a[12];
  for (auto& v : a) v = _mm512_setzero_ps();
  for (int64_t i = 0; i < iters; ++i) {
    // Asm barrier keeps the compiler from collapsing the chains.
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_dpbf16_ps(a[j], x, y);
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  __m512 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, a[j]);
  alignas(64) float lanes[16];  // stored and summed: GCC 12's _mm512_reduce_add_ps warns falsely
  _mm512_store_ps(lanes, s);
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

// 12 512-bit vfmadd chains: 12 x 16 x 2 flop an iteration.
__attribute__((target("avx512f"))) double fma512_chains(int64_t iters, int thread) {
  __m512 x = _mm512_set1_ps(1.0f + 0.001f * float(thread)), y = _mm512_set1_ps(0.999f);
  __m512 a[12];
  for (auto& v : a) v = _mm512_setzero_ps();
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_fmadd_ps(x, y, a[j]);
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  __m512 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, a[j]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

// 10 256-bit vfmadd chains (two FMA pipes x 4-5 cycles of latency): 10 x 8 x 2 flop an iteration.
__attribute__((target("avx2,fma"))) double fma_chains(int64_t iters, int thread) {
  __m256 x = _mm256_set1_ps(1.0f + 0.001f * float(thread)), y = _mm256_set1_ps(0.999f);
  __m256 a[10];
  for (auto& v : a) v = _mm256_setzero_ps();
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 10
    for (int j = 0; j < 10; ++j) a[j] = _mm256_fmadd_ps(x, y, a[j]);
    __asm__ volatile("" : "+x"(x), "+x"(y));
  }
  __m256 s = a[0];
  for (int j = 1; j < 10; ++j) s = _mm256_add_ps(s, a[j]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

// 12 vpdpbusd chains: 12 x 64 u8 x s8 products and their sums (128 ops, like a flop pair) an iteration.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) double int8_chains(int64_t iters, int thread) {
  __m512i x = _mm512_set1_epi8(char(1 + thread)), y = _mm512_set1_epi8(3);
  __m512i a[12];
  for (auto& v : a) v = _mm512_setzero_si512();
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_dpbusd_epi32(a[j], x, y);
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  __m512i s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_epi32(s, a[j]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, s);
  double sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}

}  // namespace

// bf16 multiply-add peak in flop/s: independent vdpbf16ps chains in registers on every thread.
double measure_bf16_peak() {
  if (!__builtin_cpu_supports("avx512bf16")) return 0;
  static const double peak = best_parallel_rate(30, 2'000'000, 12 * 64, bf16_chains);
  return peak;
}

double measure_fma_peak() {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
  static const double peak = best_parallel_rate(30, 2'000'000, 10 * 16, fma_chains);
  return peak;
}

double measure_fma512_peak() {
  if (!__builtin_cpu_supports("avx512f")) return 0;
  static const double peak = best_parallel_rate(30, 2'000'000, 12 * 32, fma512_chains);
  return peak;
}

double measure_bf16_product_peak(const char** name, bool fma_products) {
  const double bf16 = fma_products ? 0 : measure_bf16_peak();
  if (bf16 > 0) {
    *name = "bf16";
    return bf16;
  }
  const double fma512 = measure_fma512_peak();
  *name = fma512 > 0 ? "fp32 FMA (512-bit)" : "fp32 FMA";
  return fma512 > 0 ? fma512 : measure_fma_peak();
}

// int8 multiply-add peak in op/s: independent vpdpbusd chains in registers on every thread.
double measure_int8_peak() {
  if (!__builtin_cpu_supports("avx512vnni")) return 0;
  static const double peak = best_parallel_rate(30, 2'000'000, 12 * 128, int8_chains);
  return peak;
}

namespace {

// Loads the tile configuration both AMX measures use on this thread: palette 1, all eight tiles 16
// rows of 64 bytes (the ldtilecfg operand's layout).
__attribute__((target("amx-tile"))) void load_square_tiles() {
  struct alignas(64) Cfg {
    uint8_t palette = 1, start = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  _tile_loadconfig(&c);
}

// load_square_tiles, then zeros into the operand tiles 4-7 and the accumulators 0-3: where both
// in-register loops start (products of zeros keep every accumulator finite, bf16 or int8).
__attribute__((target("amx-tile"))) void prime_square_tiles() {
  load_square_tiles();
  alignas(64) static const uint8_t zeros[1024] = {};
  _tile_loadd(4, zeros, 64);
  _tile_loadd(5, zeros, 64);
  _tile_loadd(6, zeros, 64);
  _tile_loadd(7, zeros, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

}  // namespace

// tdpbf16ps peak in flop/s: four independent accumulator tiles fed by tiles already loaded, on
// every thread (each product is 16 x 16 outputs x 32 K-elements x 2 flop).
__attribute__((target("amx-tile,amx-bf16"))) double measure_amx_bf16_peak() {
  if (!cpu_features().amx_bf16) return 0;  // also makes the process ask the OS for the tile state
  static double cached = 0;
  if (cached > 0) return cached;
  constexpr int64_t kIters = 200'000;
  double best = 0;
  for (int rep = 0; rep < 20; ++rep) {
    const double t0 = now_s();
#pragma omp parallel
    {
      prime_square_tiles();
      for (int64_t i = 0; i < kIters; ++i) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      alignas(64) float sink[16 * 16];
      _tile_stored(0, sink, 64);
      __asm__ volatile("" : : "r"(sink) : "memory");
      _tile_release();
    }
    const double dt = now_s() - t0;
    best = std::max(best, double(kIters) * 4 * 16 * 16 * 32 * 2 * omp_get_max_threads() / dt);
  }
  cached = best;
  return best;
}

// The AMX kernel's inner loop (kernels/matmul_amx_bf16.cpp: two A tiles at the activation row
// stride, two B tiles of 1 KiB, four accumulators) on every thread: the loop's own ceiling, apart
// from the driver's blocking. l2 = false: A is 32 rows of 256 elements and B two groups' 8 chunks
// (34 KiB together, in L1), passed over and over; true: A is 128 rows of 2048 elements (520 KiB)
// and B one group pair over all of K (128 KiB), a block of the driver's with everything in L2.
__attribute__((target("amx-tile,amx-bf16"))) double measure_amx_bf16_tile_loop(bool l2) {
  if (!cpu_features().amx_bf16) return 0;
  const int64_t K = l2 ? 2048 : 256, rows = l2 ? 128 : 32, lda = K * 2 + 64, chunks = K / 32;
  const int64_t passes = l2 ? 2000 : 50000;  // ~10 ms of products a repetition at the tile peak
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double t_max = 0;
#pragma omp parallel reduction(max : t_max)
    {
      AlignedBuf<uint8_t> a(size_t(rows * lda)), b(size_t(2 * chunks * 1024));
      // bf16 0x3f3f (0.75) everywhere: finite products, no zero operands.
      std::fill(a.p, a.p + a.n, uint8_t(0x3f));
      std::fill(b.p, b.p + b.n, uint8_t(0x3f));
      load_square_tiles();
      alignas(64) float sink[16 * 16];
      const uint8_t* w0 = b.p;
      const uint8_t* w1 = b.p + chunks * 1024;
      const double t0 = now_s();
      for (int64_t pass = 0; pass < passes; ++pass)
        for (int64_t rp = 0; rp < rows / 32; ++rp) {
          const uint8_t* x0 = a.p + rp * 32 * lda;
          const uint8_t* x1 = x0 + 16 * lda;
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
          for (int64_t k = 0; k < chunks; ++k) {
            _tile_loadd(6, w0 + k * 1024, 64);
            _tile_loadd(4, x0 + k * 64, lda);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, w1 + k * 1024, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, x1 + k * 64, lda);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
          _tile_stored(0, sink, 64);
          _tile_stored(1, sink, 64);
          _tile_stored(2, sink, 64);
          _tile_stored(3, sink, 64);
        }
      t_max = now_s() - t0;
      __asm__ volatile("" : : "r"(sink) : "memory");
      _tile_release();
    }
    const double flops = double(passes) * double(rows / 32) * double(chunks) * 4 * 16 * 16 * 32 * 2;
    best = std::max(best, flops * omp_get_max_threads() / t_max);
  }
  return best;
}

// Nanoseconds an iteration of four tdpbssd on tiles in registers (tiles), of 96 independent 512-bit
// vpdpwssd in 12 chains (vectors), and of both in one loop (both), on one thread: whether the vector
// side runs while the tile unit multiplies. The AMX int8 kernels' fp32 steps are such vector work.
__attribute__((target("amx-tile,amx-int8,avx512f,avx512vnni"))) AmxBesideVectors measure_amx_int8_beside_vectors() {
  AmxBesideVectors r;
  if (!cpu_features().amx_int8) return r;
  prime_square_tiles();
  __m512i v[12];
  for (int i = 0; i < 12; ++i) v[i] = _mm512_set1_epi32(i);
  const __m512i w = _mm512_set1_epi32(3);
  constexpr int64_t kIters = 200'000;
  auto run = [&](bool tiles, bool vectors) __attribute__((always_inline)) {
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      const double t0 = now_s();
      for (int64_t it = 0; it < kIters; ++it) {
        if (tiles) {
          _tile_dpbssd(0, 4, 6);
          _tile_dpbssd(1, 4, 7);
          _tile_dpbssd(2, 5, 6);
          _tile_dpbssd(3, 5, 7);
        }
        if (vectors)
#pragma GCC unroll 96
          for (int k = 0; k < 96; ++k) {
            v[k % 12] = _mm512_dpwssd_epi32(v[k % 12], w, v[(k + 1) % 12]);
            __asm__ volatile("" : "+v"(v[k % 12]));
          }
      }
      best = std::min(best, (now_s() - t0) / double(kIters) * 1e9);
    }
    return best;
  };
  r.tiles_ns = run(true, false);
  r.vectors_ns = run(false, true);
  r.both_ns = run(true, true);
  alignas(64) int32_t sink[16 * 16];
  _tile_stored(0, sink, 64);
  __asm__ volatile("" : : "r"(sink), "v"(v[0]) : "memory");
  _tile_release();
  return r;
}

}  // namespace dpserve
