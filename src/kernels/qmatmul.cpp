// Which block computes a product with block-quantized weights, and plain (GGML-layout) weights
// on the SIMD paths: those only read the repacked layout, so plain rows are repacked a couple of
// groups at a time into a per-thread buffer first (the model repacks once at load instead).
#include <algorithm>

#include "core/check.h"
#include "core/cpu.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/quant_act.h"
#include "kernels/repack.h"

namespace dpserve::kernels {

namespace {

template <QBlockFn Block>
void via_scratch(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int64_t kGroups = 2;
  const WeightView& w = a.w;
  const int64_t group_bytes = 16 * dtype_row_bytes(w.dtype, w.cols);
  const int64_t ld_bytes = dtype_row_bytes(w.dtype, w.ld);
  thread_local AlignedBytes scratch;
  if (scratch.size() < size_t(kGroups * group_bytes)) scratch = AlignedBytes(size_t(kGroups * group_bytes));
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  for (int64_t g0 = n0 / 16 * 16; g0 < n1; g0 += 16 * kGroups) {
    const int64_t rows = std::min(w.rows - g0, 16 * kGroups);
    for (int64_t r = 0; r < rows; r += 16)
      interleave_group(w.dtype, src + (g0 + r) * ld_bytes, ld_bytes, int(std::min<int64_t>(16, rows - r)), w.cols,
                       scratch.data() + r / 16 * group_bytes);
    QBlockArgs s = a;
    s.w = WeightView{scratch.data(), dtype_interleaved(w.dtype), rows, w.cols, w.cols};
    const int64_t lo = std::max(n0, g0);
    s.y = a.y + (lo - n0);
    Block(s, m0, m1, lo - g0, std::min(n1, g0 + rows) - g0);
  }
}

// The current driver's block: the prepared rows in MatmulTask::xq, output at absolute (m, n), bias.
template <QBlockFn Block>
void with_task(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  QBlockArgs a;
  a.act = t.xq->row(0);
  a.act_ld = t.xq->ld();
  a.w = t.w;
  a.y = t.y + m0 * t.ldy + n0;
  a.ldy = t.ldy;
  Block(a, m0, m1, n0, n1);
  if (t.bias)
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = n0; n < n1; ++n) t.y[m * t.ldy + n] += t.bias[n];
}

}  // namespace

QBlockFn qblock_fn(KernelIsa isa, DType t) {
  const bool repacked = dtype_row_group(t) > 1;
  switch (isa) {
    case KernelIsa::Portable: return portable::qmatmul_block;
    case KernelIsa::Avx2: return repacked ? avx2::qmatmul_block : via_scratch<avx2::qmatmul_block>;
    case KernelIsa::Avx512: return repacked ? avx512::qmatmul_block : via_scratch<avx512::qmatmul_block>;
    case KernelIsa::Avx512Bf16:
      // Every CPU with AVX-512 BF16 so far has VNNI too; check anyway.
      if (cpu_features().avx512vnni) return repacked ? vnni::qmatmul_block : via_scratch<vnni::qmatmul_block>;
      return repacked ? avx512::qmatmul_block : via_scratch<avx512::qmatmul_block>;
  }
  return portable::qmatmul_block;
}

MatmulBlockFn qmatmul_block_fn(KernelIsa isa, DType t) {
  const bool repacked = dtype_row_group(t) > 1;
  switch (isa) {
    case KernelIsa::Portable: return with_task<portable::qmatmul_block>;
    case KernelIsa::Avx2: return repacked ? with_task<avx2::qmatmul_block> : with_task<via_scratch<avx2::qmatmul_block>>;
    case KernelIsa::Avx512:
      return repacked ? with_task<avx512::qmatmul_block> : with_task<via_scratch<avx512::qmatmul_block>>;
    case KernelIsa::Avx512Bf16:
      if (cpu_features().avx512vnni)
        return repacked ? with_task<vnni::qmatmul_block> : with_task<via_scratch<vnni::qmatmul_block>>;
      return repacked ? with_task<avx512::qmatmul_block> : with_task<via_scratch<avx512::qmatmul_block>>;
  }
  return with_task<portable::qmatmul_block>;
}

}  // namespace dpserve::kernels
