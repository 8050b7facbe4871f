// Which block computes a product with block-quantized weights, and plain (GGML-layout) weights
// on the SIMD paths: those only read the repacked layout, so plain rows are repacked a couple of
// groups at a time into a per-thread buffer first (the model repacks once at load instead).
#include <algorithm>

#include "core/check.h"
#include "core/cpu.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/repack.h"

namespace dpserve::kernels {

namespace {

template <MatmulBlockFn Block>
void via_scratch(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int64_t kGroups = 2;
  const WeightView& w = t.w;
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
    MatmulTask s = t;
    s.w = WeightView{scratch.data(), dtype_interleaved(w.dtype), rows, w.cols, w.cols};
    s.y = t.y + g0;
    s.bias = t.bias ? t.bias + g0 : nullptr;
    Block(s, m0, m1, std::max(n0, g0) - g0, std::min(n1, g0 + rows) - g0);
  }
}

}  // namespace

MatmulBlockFn qmatmul_block_fn(KernelIsa isa, DType t) {
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

}  // namespace dpserve::kernels
