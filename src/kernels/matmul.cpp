// matmul driver: validation, bf16 packing of the activations, blocking and
// OpenMP work split; the arithmetic is in the per-ISA blocks (matmul_*.cpp).
#include "kernels/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/dequant.h"
#include "kernels/isa.h"
#include "kernels/matmul_impl.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/quant_act.h"
#include "kernels/repack.h"

namespace dpserve {

using kernels::MatmulBlockFn;
using kernels::MatmulTask;

WeightView WeightView::row_slice(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) fail("row_slice [{}, {}) out of range of a {}-row matrix", r0, r0 + n, rows);
  // Repacked types interleave rows in groups: a slice starts on a group.
  if (r0 % dtype_row_group(dtype) != 0)
    fail("row_slice at row {} of a {} matrix does not start a {}-row group", r0, dtype_name(dtype), dtype_row_group(dtype));
  WeightView v = *this;
  v.data = static_cast<const char*>(data) + r0 * dtype_row_bytes(dtype, ld);
  v.rows = n;
  return v;
}

WeightView WeightView::col_slice(int64_t c0, int64_t n) const {
  if (c0 < 0 || n < 0 || c0 + n > cols) fail("col_slice [{}, {}) out of range of a {}-column matrix", c0, c0 + n, cols);
  // Block types are cut on block boundaries only (a tail that ends the row may be partial).
  if (!dtype_row_splits(dtype, c0) || (c0 + n != cols && !dtype_row_splits(dtype, n)))
    fail("col_slice [{}, {}) of a {} matrix does not fall on {}-element block boundaries", c0, c0 + n,
         dtype_name(dtype), dtype_block_elems(dtype));
  WeightView v = *this;
  v.data = static_cast<const char*>(data) + dtype_row_bytes(dtype, c0) * dtype_row_group(dtype);
  v.cols = n;
  return v;
}

float WeightView::at(int64_t r, int64_t c) const {
  DP_CHECK(r >= 0 && r < rows && c >= 0 && c < cols, "({}, {}) outside {}x{}", r, c, rows, cols);
  if (dtype_row_group(dtype) > 1) {
    std::vector<float> row(static_cast<size_t>(cols));
    weight_row_to_f32(*this, r, row.data());
    return row[size_t(c)];
  }
  return dequantize_at(dtype, static_cast<const char*>(data) + r * dtype_row_bytes(dtype, ld), c);
}

void weight_row_to_f32(const WeightView& w, int64_t r, float* out) {
  if (r < 0 || r >= w.rows) fail("row {} out of range of a {}-row matrix", r, w.rows);
  if (dtype_row_group(w.dtype) > 1) {  // repacked: gather the row's blocks back first
    const int64_t g = r / 16;
    thread_local std::vector<uint8_t> plain;
    plain.resize(size_t(dtype_row_bytes(w.dtype, w.cols)));
    deinterleave_row(w.dtype, static_cast<const uint8_t*>(w.data) + g * 16 * dtype_row_bytes(w.dtype, w.ld),
                     int(r % 16), w.cols, plain.data());
    dequantize_row(dtype_plain(w.dtype), plain.data(), out, w.cols);
    return;
  }
  dequantize_row(w.dtype, static_cast<const char*>(w.data) + r * dtype_row_bytes(w.dtype, w.ld), out, w.cols);
}

// f32_to_bf16 (core/bf16.h) without a branch, so the packing loop vectorises.
static inline uint16_t round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

static void check_args(const float* x, int64_t M, int64_t ldx, const WeightView& w, float* y, int64_t ldy) {
  if (M < 0) fail("matmul: negative M ({})", M);
  if (w.rows < 0 || w.cols < 0) fail("matmul: bad weight shape {}x{}", w.rows, w.cols);
  if (w.ld < w.cols) fail("matmul: weight row stride {} < columns {}", w.ld, w.cols);
  if (M > 0 && ldx < w.cols) fail("matmul: activation row stride {} < K {}", ldx, w.cols);
  if (M > 0 && ldy < w.rows) fail("matmul: output row stride {} < N {}", ldy, w.rows);
  if (M > 0 && w.rows > 0 && (!y || (w.cols > 0 && (!x || !w.data)))) fail("matmul: null pointer");
}

namespace ref {

void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy) {
  check_args(x, M, ldx, w, y, ldy);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < w.rows; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) {
        float xv = x[m * ldx + k];
        if (w.dtype == DType::BF16) xv = bf16_to_f32(f32_to_bf16(xv));
        acc += double(xv) * double(w.at(n, k));
      }
      if (bias) acc += bias[n];
      y[m * ldy + n] = float(acc);
    }
}

}  // namespace ref

static MatmulBlockFn pick_block(KernelIsa isa, DType dt) {
  if (!kernel_isa_supported(isa)) fail("matmul: kernel ISA {} not supported by this CPU", kernel_isa_name(isa));
  if (dtype_is_quantized(dt)) return kernels::qmatmul_block_fn(isa, dt);
  switch (isa) {
    case KernelIsa::Avx512Bf16:
      return dt == DType::BF16 ? kernels::avx512bf16::matmul_block : kernels::avx512::matmul_block;
    case KernelIsa::Avx512: return kernels::avx512::matmul_block;
    case KernelIsa::Avx2: return kernels::avx2::matmul_block;
    case KernelIsa::Portable: return kernels::portable::matmul_block;
  }
  return kernels::portable::matmul_block;
}

// The products of one call: x times each output's weights. All share K and dtype.
static void matmul_group(KernelIsa isa, const float* x, int64_t M, int64_t ldx, const MatmulOut* outs,
                         int64_t n_outs) {
  if (n_outs == 0 || M == 0) return;
  const DType dt = outs[0].w.dtype;
  const int64_t K = outs[0].w.cols;
  int64_t n_total = 0;
  for (int64_t i = 0; i < n_outs; ++i) {
    const MatmulOut& o = outs[i];
    check_args(x, M, ldx, o.w, o.y, o.ldy);
    if (o.w.cols != K || o.w.dtype != dt) fail("matmul_multi: weights differ in K or dtype");
    if (!dtype_row_splits(dt, K)) fail("matmul: K = {} is not whole {} blocks", K, dtype_name(dt));
    n_total += o.w.rows;
  }
  if (n_total == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < n_outs; ++i)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < outs[i].w.rows; ++n) outs[i].y[m * outs[i].ldy + n] = outs[i].bias ? outs[i].bias[n] : 0.0f;
    return;
  }
  const bool big = M * n_total * K >= (int64_t(1) << 17);
  const int threads = big ? omp_get_max_threads() : 1;

  // Rounding the activations once per call (not per tile) keeps the inner loops
  // pure multiply-adds; padding makes every row a whole number of 32-wide chunks.
  thread_local std::vector<uint16_t> xb;
  const uint16_t* xbp = nullptr;
  int64_t ldxb = 0;
  if (dt == DType::BF16) {
    const int64_t kp = (K + kernels::kBf16Pad - 1) / kernels::kBf16Pad * kernels::kBf16Pad;
    // One spare cache line per row: with K a multiple of 2048 the rows would be
    // 4 KiB apart and every row of a tile would fight for the same L1 sets.
    const int64_t ld = kp + kernels::kBf16Pad;
    if (int64_t(xb.size()) < M * ld) xb.resize(M * ld);
    uint16_t* out_base = xb.data();
    auto pack_row = [&](int64_t m) {
      const float* xr = x + m * ldx;
      uint16_t* out = out_base + m * ld;
      for (int64_t k = 0; k < K; ++k) out[k] = round_bf16(xr[k]);
      for (int64_t k = K; k < kp; ++k) out[k] = 0;
    };
    // Explicit branches: even an if(false) parallel region costs a team set-up.
    if (threads > 1 && M > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t m = 0; m < M; ++m) pack_row(m);
    } else {
      for (int64_t m = 0; m < M; ++m) pack_row(m);
    }
    xbp = out_base;
    ldxb = ld;
  }
  // Block-quantized weights: the activations as int8 blocks, once for every weight row.
  // (Through a pointer: inside the parallel region `xq` would name each thread's own copy.)
  thread_local QuantActs xq;
  QuantActs* xqp = &xq;
  if (dtype_is_quantized(dt)) {
    xqp->reset(act_block_elems(dt), M, K);
    if (threads > 1 && M > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t m = 0; m < M; ++m) quantize_acts(isa, x, ldx, m, m + 1, *xqp);
    } else {
      quantize_acts(isa, x, ldx, 0, M, *xqp);
    }
  }

  const MatmulBlockFn block = pick_block(isa, dt);
  // Blocks of W rows sized to stay in L2 while the M tiles stream past them
  // (tasks n-major, so consecutive tasks share a W block), and at most 32
  // rows of x per block so the tiles' saved accumulators stay in L1.
  const int64_t row_bytes = dtype_row_bytes(dt, K);
  // A multiple of every ISA's register tile width (quantized: of 16-row groups, 4 per GEMV tile).
  const int64_t kGrain = dtype_is_quantized(dt) ? 64 : 24;
  int64_t nb = std::max<int64_t>(kGrain, (int64_t(256) << 10) / row_bytes / kGrain * kGrain);
  const int64_t per_thread = (n_total + threads - 1) / threads;
  nb = std::min(nb, (per_thread + kGrain - 1) / kGrain * kGrain);
  const int64_t mb = std::min<int64_t>(M, 32);
  const int64_t m_blocks = (M + mb - 1) / mb;
  // Tasks over every output's row blocks, laid end to end.
  struct Part {
    MatmulTask t;
    int64_t first_task;
    int64_t n_blocks;
  };
  std::vector<Part> parts;
  int64_t tasks = 0;
  for (int64_t i = 0; i < n_outs; ++i) {
    const MatmulOut& o = outs[i];
    if (o.w.rows == 0) continue;
    Part p;
    p.t.x = x;
    p.t.ldx = ldx;
    p.t.xb = xbp;
    p.t.ldxb = ldxb;
    p.t.xq = xqp;
    p.t.w = o.w;
    p.t.bias = o.bias;
    p.t.y = o.y;
    p.t.ldy = o.ldy;
    p.first_task = tasks;
    p.n_blocks = (o.w.rows + nb - 1) / nb;
    tasks += p.n_blocks * m_blocks;
    parts.push_back(p);
  }
  auto run = [&](int64_t i) {
    size_t pi = 0;
    while (pi + 1 < parts.size() && parts[pi + 1].first_task <= i) ++pi;
    const Part& p = parts[pi];
    const int64_t j = i - p.first_task;
    const int64_t N = p.t.w.rows;
    const int64_t n0 = (j / m_blocks) * nb, m0 = (j % m_blocks) * mb;
    block(p.t, m0, std::min(M, m0 + mb), n0, std::min(N, n0 + nb));
  };
  if (threads > 1) {
    // Dynamic: a core shared with other work (the server's threads, another
    // process) must not leave its half of the product waiting on it.
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t i = 0; i < tasks; ++i) run(i);
  } else {
    for (int64_t i = 0; i < tasks; ++i) run(i);
  }
}

void matmul_isa(KernelIsa isa, const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias,
                float* y, int64_t ldy) {
  check_args(x, M, ldx, w, y, ldy);
  MatmulOut o{w, bias, y, ldy};
  matmul_group(isa, x, M, ldx, &o, 1);
}

void matmul_multi(const float* x, int64_t M, int64_t ldx, const MatmulOut* outs, int64_t n_outs) {
  // Weights of different types (a quantization mix such as llama.cpp's Q4_K_M: a Q6_K v_proj
  // beside Q4_K q/k) run as one product per type; no output's bits change.
  std::vector<MatmulOut> same;
  std::vector<uint8_t> done(size_t(std::max<int64_t>(n_outs, 0)), 0);
  for (int64_t i = 0; i < n_outs; ++i) {
    if (done[size_t(i)]) continue;
    same.clear();
    for (int64_t j = i; j < n_outs; ++j)
      if (!done[size_t(j)] && outs[j].w.dtype == outs[i].w.dtype) {
        same.push_back(outs[j]);
        done[size_t(j)] = 1;
      }
    if (same.size() == size_t(n_outs)) return matmul_group(best_kernel_isa(), x, M, ldx, outs, n_outs);
    matmul_group(best_kernel_isa(), x, M, ldx, same.data(), int64_t(same.size()));
  }
}

void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy) {
  matmul_isa(best_kernel_isa(), x, M, ldx, w, bias, y, ldy);
}

}  // namespace dpserve
