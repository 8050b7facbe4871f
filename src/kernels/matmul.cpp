// matmul driver: validation, one preparation of each activation row, the split of the blocks
// over the thread team, and the epilogue (bias, SwiGLU, scale, Set/Add). The arithmetic is in
// the kernels (matmul_kernel.h), found by weight format and ISA.
#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "core/fp8.h"
#include "kernels/dequant.h"
#include "kernels/isa.h"
#include "kernels/matmul_kernel.h"
#include "kernels/repack.h"
#include "kernels/vec_math.h"

namespace dpserve {

using kernels::MatmulBlockArgs;
using kernels::MatmulKernel;
using kernels::find_matmul_kernel;

WeightView WeightView::row_slice(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) fail("row_slice [{}, {}) out of range of a {}-row matrix", r0, r0 + n, rows);
  // Repacked types interleave rows in groups: a slice starts on a group.
  if (r0 % dtype_row_group(dtype) != 0)
    fail("row_slice at row {} of a {} matrix does not start a {}-row group", r0, dtype_name(dtype), dtype_row_group(dtype));
  WeightView v = *this;
  v.data = static_cast<const char*>(data) + r0 * dtype_row_bytes(dtype, ld);
  v.rows = n;
  v.row0 += r0;
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
  v.col0 += c0;
  return v;
}

namespace {

// An fp8 checkpoint's element: its code times its block's scale in fp32, rounded to bf16.
inline float fp8_value(uint8_t code, float scale) { return bf16_to_f32(f32_to_bf16(fp8_to_f32(fp8_e4m3_t{code}) * scale)); }

// Element (r, c) of an F8_E4M3 view.
float fp8_element(const WeightView& w, int64_t r, int64_t c) {
  DP_CHECK(w.fp8, "an F8_E4M3 matrix without its block scales");
  const Fp8BlockScales& b = *w.fp8;
  const float s = b.s[(w.row0 + r) / b.rows * b.ld + (w.col0 + c) / b.cols];
  return fp8_value(static_cast<const uint8_t*>(w.data)[r * w.ld + c], s);
}

}  // namespace

float WeightView::at(int64_t r, int64_t c) const {
  DP_CHECK(r >= 0 && r < rows && c >= 0 && c < cols, "({}, {}) outside {}x{}", r, c, rows, cols);
  if (dtype == DType::F8_E4M3) return fp8_element(*this, r, c);
  if (dtype_row_group(dtype) > 1) {
    std::vector<float> row(static_cast<size_t>(cols));
    weight_row_to_f32(*this, r, row.data());
    return row[size_t(c)];
  }
  return dequantize_at(dtype, static_cast<const char*>(data) + r * dtype_row_bytes(dtype, ld), c);
}

void weight_row_to_f32(const WeightView& w, int64_t r, float* out) {
  if (r < 0 || r >= w.rows) fail("row {} out of range of a {}-row matrix", r, w.rows);
  if (w.dtype == DType::F8_E4M3) {  // fp8_element's arithmetic, a scale block's run of columns at a time
    DP_CHECK(w.fp8, "an F8_E4M3 matrix without its block scales");
    const Fp8BlockScales& b = *w.fp8;
    const float* srow = b.s + (w.row0 + r) / b.rows * b.ld;
    const uint8_t* codes = static_cast<const uint8_t*>(w.data) + r * w.ld;
    for (int64_t c = 0; c < w.cols;) {
      const int64_t tc = w.col0 + c, end = std::min(w.cols, c + b.cols - tc % b.cols);
      const float s = srow[tc / b.cols];
      for (; c < end; ++c) out[c] = fp8_value(codes[c], s);
    }
    return;
  }
  if (const int64_t G = dtype_row_group(w.dtype); G > 1) {  // repacked: gather the row's blocks back first
    const int64_t g = r / G;
    thread_local std::vector<uint8_t> plain;
    plain.resize(size_t(dtype_row_bytes(w.dtype, w.cols)));
    deinterleave_row(w.dtype, static_cast<const uint8_t*>(w.data) + g * G * dtype_row_bytes(w.dtype, w.ld),
                     int(r % G), w.cols, plain.data());
    dequantize_row(dtype_plain(w.dtype), plain.data(), out, w.cols);
    return;
  }
  dequantize_row(w.dtype, static_cast<const char*>(w.data) + r * dtype_row_bytes(w.dtype, w.ld), out, w.cols);
}

static void check_args(const float* x, int64_t M, int64_t ldx, const WeightView& w, float* y, int64_t ldy) {
  if (M < 0) fail("matmul: negative M ({})", M);
  if (w.rows < 0 || w.cols < 0) fail("matmul: bad weight shape {}x{}", w.rows, w.cols);
  if (w.ld < w.cols) fail("matmul: weight row stride {} < columns {}", w.ld, w.cols);
  // The load converts fp8 checkpoints' matrices (WeightPrep); one reaching a product is a loader bug.
  if (w.dtype == DType::F8_E4M3) fail("matmul: an F8_E4M3 matrix was not converted on load");
  if (M > 0 && ldx < w.cols) fail("matmul: activation row stride {} < K {}", ldx, w.cols);
  if (M > 0 && ldy < w.rows) fail("matmul: output row stride {} < N {}", ldy, w.rows);
  if (M > 0 && w.rows > 0 && (!y || (w.cols > 0 && (!x || !w.data)))) fail("matmul: null pointer");
}

namespace kernels {
namespace {
std::atomic<int64_t> g_bf16_prefetch{default_bf16_weight_prefetch()};
}  // namespace

int64_t default_bf16_weight_prefetch() { return cpu_is_intel() ? 4096 : 0; }
void set_bf16_weight_prefetch(int64_t bytes) { g_bf16_prefetch.store(std::max<int64_t>(bytes, 0), std::memory_order_relaxed); }
int64_t bf16_weight_prefetch() { return g_bf16_prefetch.load(std::memory_order_relaxed); }

}  // namespace kernels

namespace ref {

void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy) {
  check_args(x, M, ldx, w, y, ldy);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < w.rows; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) {
        float xv = x[m * ldx + k];
        if (dtype_plain(w.dtype) == DType::BF16) xv = bf16_to_f32(f32_to_bf16(xv));
        acc += double(xv) * double(w.at(n, k));
      }
      if (bias) acc += bias[n];
      y[m * ldy + n] = float(acc);
    }
}

}  // namespace ref

namespace {

// Prepared activations up to this size are made by every member for itself (no barrier); larger
// ones are split over the team into a shared buffer.
constexpr int64_t kPrivateActBytes = 64 << 10;
// Bytes between prepared rows beyond the kernel's row: rows of a power-of-two length would all
// map to the same L1 sets.
constexpr int64_t kStagger = 64;
// Weight bytes per block, so a block's rows stay in L2 while the activation tiles pass them.
constexpr int64_t kBlockWeightBytes = 256 << 10;
// Up to this many row blocks of one column block make one task. Members working on the same
// column block at once each pull it into their own L2, so a 66-row decode step read every weight
// twice; past a few row blocks the reuse inside a task outweighs that and smaller tasks balance
// better.
constexpr int64_t kRowBlocksPerTask = 4;
// Column blocks: at least this many tasks a member.
constexpr int64_t kTasksPerMember = 4;
// Products of up to this many activation rows read each weight once (every kernel's first row
// tile covers them): their columns are handed out by Team::guided, each chunk 1 / (kGuidedDiv x
// members) of what is left. Single-stream decode on an Intel Xeon against 256 KiB tasks handed
// out in turn (which left a member idle for up to one task at the end of every product): Q8_0
// 1.04-1.05x, bf16 1.02-1.03x, Q4_K_M within noise; dividing by 1 or 4 did no better
// (docs/benchmarks.md).
constexpr int64_t kStreamOnceRows = 3;
constexpr int64_t kGuidedDiv = 2;
// Row bands (MatmulKernel::band_act_bytes): at most this many rows a band, and this many column
// ranges per member (fewer when K takes several panels), so a member that loses its core for a
// while does not hold up the others.
constexpr int64_t kMaxBandRows = 256;
constexpr int64_t kBandTasksPerMember = 8;

// A grow-only 64-byte-aligned buffer owned by one thread.
struct LocalBuf {
  void* p = nullptr;
  size_t bytes = 0;
  ~LocalBuf() { std::free(p); }
  void* get(size_t n) {
    if (n > bytes) {
      std::free(p);
      bytes = (n + n / 4 + 63) / 64 * 64;
      p = std::aligned_alloc(64, bytes);
      if (!p) fail("out of memory: {} bytes of matmul scratch", bytes);
    }
    return p;
  }
};

// One distinct set of activation rows and its place in the prepared buffer.
struct Source {
  const float* x;
  int64_t ldx, M;
  const int32_t* rows;
  const MatmulKernel* k;
  int64_t K, row_bytes, offset;
  const float* row(int64_t m) const { return x + (rows ? int64_t(rows[m]) : m) * ldx; }
};

struct Plan {
  const MatmulJob* job;
  const MatmulKernel* k;
  size_t src;
  int64_t N, nb, n_blocks, mb, m_blocks, m_per_task, first_task;
};

void validate(KernelIsa isa, const MatmulJob* jobs, int64_t n_jobs, MatmulOrder order) {
  if (!kernel_isa_supported(isa)) fail("matmul: kernel ISA {} not supported by this CPU", kernel_isa_name(isa));
  if (n_jobs < 0 || (n_jobs > 0 && !jobs)) fail("matmul: bad job list");
  for (int64_t i = 0; i < n_jobs; ++i) {
    const MatmulJob& j = jobs[i];
    check_args(j.x, j.M, j.ldx, j.w, j.y, j.ldy);
    if (j.M > 0 && j.w.rows > 0 && j.w.cols > 0 && !find_matmul_kernel(j.w.dtype, isa, j.M))
      fail("matmul: no kernel for {} weights", dtype_name(j.w.dtype));
    if (!dtype_row_splits(j.w.dtype, j.w.cols)) fail("matmul: K = {} is not whole {} blocks", j.w.cols, dtype_name(j.w.dtype));
    if (j.w_up.data) {
      if (j.w_up.dtype != j.w.dtype || j.w_up.rows != j.w.rows || j.w_up.cols != j.w.cols || j.w_up.ld < j.w_up.cols)
        fail("matmul: gated pair with different weights ({} {}x{} and {} {}x{})", dtype_name(j.w.dtype), j.w.rows,
             j.w.cols, dtype_name(j.w_up.dtype), j.w_up.rows, j.w_up.cols);
      if (j.gate_act == GateAct::SwigluOai && !(j.gate_limit > 0))
        fail("matmul: SwigluOai needs a positive gate_limit, got {}", j.gate_limit);
    }
    if (order == MatmulOrder::ColumnsInJobOrder && j.w.rows != jobs[0].w.rows)
      fail("matmul: jobs computed column block by column block must have the same N ({} vs {})", j.w.rows,
           jobs[0].w.rows);
  }
}

// Computes job p's block [m0, m1) x [n0, n1) and writes it through the epilogue.
void run_block(const Plan& p, const Source& s, const uint8_t* act, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  thread_local LocalBuf tmp_buf, up_buf;
  const MatmulJob& j = *p.job;
  const int64_t bn = n1 - n0, bm = m1 - m0;
  MatmulBlockArgs a;
  a.act = act + s.offset + m0 * s.row_bytes;
  a.act_ld = s.row_bytes;
  a.w = j.w;
  const bool direct = j.store == MatmulStore::Set && !j.out_rows && !j.scale && !j.w_up.data;
  float* v;
  int64_t ldv;
  if (direct) {
    v = j.y + m0 * j.ldy + n0;
    ldv = j.ldy;
  } else {
    v = static_cast<float*>(tmp_buf.get(size_t(bm * bn) * sizeof(float)));
    ldv = bn;
  }
  auto compute = [&](const WeightView& w, float* out) {
    if (s.K == 0) {
      for (int64_t m = 0; m < bm; ++m) std::fill(out + m * ldv, out + m * ldv + bn, 0.0f);
      return;
    }
    a.w = w;
    a.y = out;
    a.ldy = ldv;
    p.k->block(a, 0, bm, n0, n1);
  };
  compute(j.w, v);
  if (j.bias)
    for (int64_t m = 0; m < bm; ++m)
      for (int64_t n = 0; n < bn; ++n) v[m * ldv + n] += j.bias[n0 + n];
  if (direct) return;
  if (j.w_up.data) {
    float* u = static_cast<float*>(up_buf.get(size_t(bm * bn) * sizeof(float)));
    compute(j.w_up, u);
    if (j.bias_up)
      for (int64_t m = 0; m < bm; ++m)
        for (int64_t n = 0; n < bn; ++n) u[m * bn + n] += j.bias_up[n0 + n];
    // Element-wise, so the same bits however the block is cut.
    if (j.gate_act == GateAct::GeluTanh) {
      vec_gelu_tanh_mul(v, u, v, bm * bn);
    } else if (j.gate_act == GateAct::SwigluOai) {
      vec_swiglu_oai_mul(v, u, v, bm * bn, j.gate_limit);
    } else {
      vec_silu_mul(v, u, v, bm * bn);
    }
  }
  for (int64_t m = 0; m < bm; ++m) {
    const float* vr = v + m * ldv;
    const int64_t orow = j.out_rows ? int64_t(j.out_rows[m0 + m]) : m0 + m;
    float* dst = j.y + orow * j.ldy + n0;
    if (j.scale) {
      const float sc = j.scale[m0 + m];
      if (j.store == MatmulStore::Add) {
        for (int64_t n = 0; n < bn; ++n) dst[n] += sc * vr[n];
      } else {
        for (int64_t n = 0; n < bn; ++n) dst[n] = sc * vr[n];
      }
    } else if (j.store == MatmulStore::Add) {
      for (int64_t n = 0; n < bn; ++n) dst[n] += vr[n];
    } else {
      std::memcpy(dst, vr, size_t(bn) * sizeof(float));
    }
  }
}

}  // namespace

void matmul_jobs_isa(KernelIsa isa, Team& t, const MatmulJob* jobs, int64_t n_jobs, MatmulOrder order) {
  validate(isa, jobs, n_jobs, order);
  // Every member builds the same plan (a few jobs: cheaper than sharing it).
  thread_local std::vector<Source> srcs;
  thread_local std::vector<Plan> plans;
  srcs.clear();
  plans.clear();
  int64_t act_bytes = 0, act_rows = 0;
  for (int64_t i = 0; i < n_jobs; ++i) {
    const MatmulJob& j = jobs[i];
    if (j.M == 0 || j.w.rows == 0) continue;
    const MatmulKernel* k = find_matmul_kernel(j.w.dtype, isa, j.M);
    const int64_t K = j.w.cols;
    size_t si = 0;
    while (si < srcs.size() && !(srcs[si].x == j.x && srcs[si].ldx == j.ldx && srcs[si].M == j.M &&
                                 srcs[si].rows == j.rows && srcs[si].K == K &&
                                 srcs[si].k->prepare_row == k->prepare_row))
      ++si;
    if (si == srcs.size()) {
      const int64_t rb = (k->act_row_bytes(K) + 63) / 64 * 64 + kStagger;
      srcs.push_back(Source{j.x, j.ldx, j.M, j.rows, k, K, rb, act_bytes});
      act_bytes += j.M * rb;
      act_rows += j.M;
    }
    plans.push_back(Plan{&j, k, si, j.w.rows, 0, 0, 0, 0, 0, 0});
  }

  // 1. Activations, prepared once per call.
  const uint8_t* act = nullptr;
  auto prepare = [&](uint8_t* buf, int64_t r0, int64_t r1) {
    int64_t base = 0;
    for (const Source& s : srcs) {
      const int64_t a = std::max(r0 - base, int64_t(0)), b = std::min(r1 - base, s.M);
      for (int64_t m = a; m < b; ++m) s.k->prepare_row(s.row(m), s.K, buf + s.offset + m * s.row_bytes);
      base += s.M;
    }
  };
  if (act_bytes <= kPrivateActBytes || t.size() == 1) {
    thread_local LocalBuf own;
    uint8_t* buf = static_cast<uint8_t*>(own.get(size_t(act_bytes)));
    prepare(buf, 0, act_rows);
    act = buf;
  } else {
    uint8_t* buf = static_cast<uint8_t*>(t.shared_scratch(0, size_t(act_bytes)));
    const Range r = t.share(act_rows);
    prepare(buf, r.begin, r.end);
    t.barrier();
    act = buf;
  }

  // 2. Blocks. Few activation rows: every weight is read once, so a task need not fit L2; guided
  // chunks give long streams first and short ones last, so the members finish close together.
  bool stream_once = order == MatmulOrder::Any;
  for (const Plan& p : plans) stream_once = stream_once && p.job->M <= kStreamOnceRows;
  if (stream_once) {
    thread_local std::vector<int64_t> first_unit;
    first_unit.assign(plans.size() + 1, 0);
    for (size_t i = 0; i < plans.size(); ++i)
      first_unit[i + 1] = first_unit[i] + (plans[i].N + plans[i].k->n_grain - 1) / plans[i].k->n_grain;
    t.guided(first_unit.back(), 1, kGuidedDiv, [&](int64_t u0, int64_t u1) {
      for (size_t i = 0; i < plans.size(); ++i) {
        const int64_t a = std::max(u0, first_unit[i]), b = std::min(u1, first_unit[i + 1]);
        if (a >= b) continue;
        const Plan& p = plans[i];
        const int64_t g = p.k->n_grain;
        run_block(p, srcs[p.src], act, 0, p.job->M, (a - first_unit[i]) * g, std::min(p.N, (b - first_unit[i]) * g));
      }
    });
    return;
  }
  // More rows: W rows sized to stay in L2 while the activation tiles pass them (unless the kernel
  // streams its weights once a block), at least a few per member so a member that loses its core
  // for a while does not hold up the others.
  int64_t tasks = 0;
  if (order == MatmulOrder::Any) {
    // How many column blocks a job is cut into for `per_member` tasks a member: of each job alone,
    // or, for a kernel that streams its weights once a block, over all the call's jobs together.
    const int64_t n_plans = int64_t(plans.size());
    auto column_parts = [&](const Plan& p, int64_t per_member) {
      const int64_t want = per_member * t.size();
      return p.k->streams_weights ? std::max<int64_t>(1, (want + n_plans - 1) / n_plans) : want;
    };
    for (Plan& p : plans) {
      const int64_t grain = p.k->n_grain;
      const bool banded = p.k->band_act_bytes > 0 && p.job->M > p.k->max_rows;
      if (banded) {
        // Row bands: each band's activation rows stay in L2 while a wide column range of weights
        // streams past them, instead of every column block reading all M rows again from L3.
        const int64_t K = srcs[p.src].K, panel_k = p.k->band_k > 0 ? std::min(K, p.k->band_k) : K;
        const int64_t panel_bytes = p.k->act_row_bytes(panel_k) + kStagger, rg = p.k->band_row_grain;
        const int64_t most = std::clamp<int64_t>(p.k->band_act_bytes / panel_bytes / rg * rg, rg, kMaxBandRows);
        const int64_t bands = (p.job->M + most - 1) / most;
        p.mb = ((p.job->M + bands - 1) / bands + rg - 1) / rg * rg;  // balanced bands
        // A band over several K panels passes them all through L2 for each column range, so every
        // range reads the band's rows again from L3: as many fewer ranges as there are panels
        // (bf16 M = 512, K = 5632: 1.07-1.10x; docs/kernels.md).
        const int64_t panels = (K + panel_k - 1) / panel_k;
        const int64_t parts = column_parts(p, std::max<int64_t>(1, kBandTasksPerMember / panels));
        const int64_t per_task = (p.N + parts - 1) / parts;
        p.nb = std::max(grain, (per_task + grain - 1) / grain * grain);
      } else {
        const int64_t row_bytes = dtype_row_bytes(p.job->w.dtype, p.job->w.cols) * (p.job->w_up.data ? 2 : 1);
        const int64_t nb = std::max<int64_t>(grain, kBlockWeightBytes / std::max<int64_t>(row_bytes, 1) / grain * grain);
        const int64_t parts = column_parts(p, kTasksPerMember);
        const int64_t per_task = (p.N + parts - 1) / parts;
        const int64_t share = std::max(grain, (per_task + grain - 1) / grain * grain);
        p.nb = p.k->streams_weights ? share : std::min(nb, share);
        p.mb = std::min(p.job->M, p.k->max_rows);
      }
      p.n_blocks = (p.N + p.nb - 1) / p.nb;
      p.m_blocks = (p.job->M + p.mb - 1) / p.mb;
      p.m_per_task = !banded && p.m_blocks <= kRowBlocksPerTask ? p.m_blocks : 1;
      p.first_task = tasks;
      tasks += p.n_blocks * (p.m_blocks / p.m_per_task);
    }
    t.dynamic(tasks, 1, [&](int64_t i0, int64_t i1) {
      size_t pi = 0;
      for (int64_t i = i0; i < i1; ++i) {
        while (pi + 1 < plans.size() && plans[pi + 1].first_task <= i) ++pi;
        const Plan& p = plans[pi];
        const int64_t j = i - p.first_task, row_tasks = p.m_blocks / p.m_per_task;
        const int64_t n0 = (j / row_tasks) * p.nb, n1 = std::min(p.N, n0 + p.nb);
        for (int64_t b = (j % row_tasks) * p.m_per_task, e = b + p.m_per_task; b < e; ++b)
          run_block(p, srcs[p.src], act, b * p.mb, std::min(p.job->M, (b + 1) * p.mb), n0, n1);
      }
    });
    return;
  }
  // ColumnsInJobOrder: one task per column block, every job in list order inside it. A job's
  // block is reused by its row blocks, then the next job's: each one (not their sum) must stay
  // in L2. Sized by the sum, a task of an MoE layer's down products got 8 rows of each of 32
  // experts, 32 short streams that each started cold (32-sequence decode 1.07-1.15x faster
  // sized by the largest job; prefill re-read every expert's activations once per task).
  const int64_t N = plans.empty() ? 0 : plans[0].N;
  int64_t grain = 1, row_bytes = 0;
  for (const Plan& p : plans) {
    grain = std::lcm(grain, p.k->n_grain);  // every job's blocks start on its own grain
    row_bytes = std::max(row_bytes, dtype_row_bytes(p.job->w.dtype, p.job->w.cols) * (p.job->w_up.data ? 2 : 1));
  }
  int64_t nb = std::max<int64_t>(grain, kBlockWeightBytes / std::max<int64_t>(row_bytes, 1) / grain * grain);
  const int64_t per_member = (N + 4 * t.size() - 1) / (4 * t.size());
  nb = std::max(grain, std::min(nb, (per_member + grain - 1) / grain * grain));
  t.dynamic((N + nb - 1) / nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * nb, n1 = std::min(N, n0 + nb);
      for (const Plan& p : plans) {
        const int64_t mb = p.k->max_rows;
        for (int64_t m0 = 0; m0 < p.job->M; m0 += mb) run_block(p, srcs[p.src], act, m0, std::min(p.job->M, m0 + mb), n0, n1);
      }
    }
  });
}

void matmul_jobs(Team& t, const MatmulJob* jobs, int64_t n_jobs, MatmulOrder order) {
  matmul_jobs_isa(best_kernel_isa(), t, jobs, n_jobs, order);
}

void matmul_multi(Team& t, const float* x, int64_t M, int64_t ldx, const MatmulOut* outs, int64_t n_outs) {
  thread_local std::vector<MatmulJob> jobs;
  jobs.clear();
  for (int64_t i = 0; i < n_outs; ++i) {
    if (outs[i].w.cols != outs[0].w.cols) fail("matmul_multi: weights differ in K");
    MatmulJob j;
    j.x = x;
    j.ldx = ldx;
    j.M = M;
    j.w = outs[i].w;
    j.bias = outs[i].bias;
    j.y = outs[i].y;
    j.ldy = outs[i].ldy;
    jobs.push_back(j);
  }
  matmul_jobs(t, jobs.data(), n_outs);
}

void matmul_multi(const float* x, int64_t M, int64_t ldx, const MatmulOut* outs, int64_t n_outs) {
  matmul_multi(Team::solo(), x, M, ldx, outs, n_outs);
}

void matmul(Team& t, const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy) {
  const MatmulOut o{w, bias, y, ldy};
  matmul_multi(t, x, M, ldx, &o, 1);
}

void matmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y,
            int64_t ldy) {
  matmul(Team::solo(), x, M, ldx, w, bias, y, ldy);
}

void matmul_isa(KernelIsa isa, const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias,
                float* y, int64_t ldy) {
  MatmulJob j;
  j.x = x;
  j.ldx = ldx;
  j.M = M;
  j.w = w;
  j.bias = bias;
  j.y = y;
  j.ldy = ldy;
  matmul_jobs_isa(isa, Team::solo(), &j, 1);
}

}  // namespace dpserve
