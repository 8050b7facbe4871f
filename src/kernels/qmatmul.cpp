// Which block computes a product with block-quantized weights, and plain (GGML-layout) weights
// on the SIMD paths: those only read the repacked layout, so plain rows are repacked a couple of
// groups at a time into a per-thread buffer first (the model repacks once at load instead).
#include <algorithm>
#include <array>
#include <atomic>

#include "core/check.h"
#include "core/cpu.h"
#include "kernels/qmatmul.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/quant_act.h"
#include "kernels/repack.h"

namespace dpserve::kernels {

namespace {

std::atomic<int64_t> g_weight_prefetch{default_quant_weight_prefetch()};
std::atomic<bool> g_weight_prefetch_l2{default_quant_weight_prefetch_l2()};
std::atomic<int64_t> g_weight_prefetch_near{default_quant_weight_prefetch_near()};

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

// Activation rows for the kernels: int8 blocks of B elements with their scales and code sums.
template <KernelIsa I, int B>
int64_t act_bytes(int64_t K) {
  return quant_act_row_bytes(B, K);
}
template <KernelIsa I, int B>
void prepare(const float* x, int64_t K, void* dst) {
  quantize_act_row(I, B, x, K, dst);
}

constexpr int kIsas = 5;                                    // KernelIsa's values
constexpr int kTypes = int(DType::Q6_K_X16) + 1;             // DType's values
// Column blocks start on whole GEMV tiles of 16-row groups (four groups per tile).
constexpr int64_t kQuantGrain = 64;
// Activation rows per block: their prepared rows and accumulators stay in L1.
constexpr int64_t kQuantMaxRows = 32;

template <KernelIsa I>
MatmulKernel make_kernel(DType t) {
  const bool k_type = act_block_elems(t) == 256;
  return MatmulKernel{dtype_name(t), k_type ? act_bytes<I, 256> : act_bytes<I, 32>,
                      k_type ? prepare<I, 256> : prepare<I, 32>, qblock_fn(I, t), kQuantGrain, kQuantMaxRows};
}

// The AMX int8 tile path where this CPU has it and the type has tiles (amx::qmatmul_has_tiles).
bool int8_tiles(DType t) {
  const CpuFeatures& f = cpu_features();
  return f.amx_int8 && f.avx512vnni && amx::qmatmul_has_tiles(t);
}

}  // namespace

int64_t default_quant_weight_prefetch() { return default_quant_weight_prefetch_l2() ? 4096 : 2048; }
bool default_quant_weight_prefetch_l2() {
  return cpu_is_intel();
}
void set_quant_weight_prefetch(int64_t bytes, bool l2) {
  g_weight_prefetch.store(std::max<int64_t>(bytes, 0), std::memory_order_relaxed);
  g_weight_prefetch_l2.store(l2, std::memory_order_relaxed);
}
int64_t quant_weight_prefetch() { return g_weight_prefetch.load(std::memory_order_relaxed); }
bool quant_weight_prefetch_l2() { return g_weight_prefetch_l2.load(std::memory_order_relaxed); }
int64_t default_quant_weight_prefetch_near() { return default_quant_weight_prefetch_l2() ? 512 : 0; }
void set_quant_weight_prefetch_near(int64_t bytes) {
  g_weight_prefetch_near.store(std::max<int64_t>(bytes, 0), std::memory_order_relaxed);
}
int64_t quant_weight_prefetch_near() { return g_weight_prefetch_near.load(std::memory_order_relaxed); }

QBlockFn qblock_fn(KernelIsa isa, DType t) {
  const bool repacked = dtype_row_group(t) > 1;
  switch (isa) {
    case KernelIsa::Portable: return portable::qmatmul_block;
    case KernelIsa::Avx2: return repacked ? avx2::qmatmul_block : via_scratch<avx2::qmatmul_block>;
    case KernelIsa::Avx512: return repacked ? avx512::qmatmul_block : via_scratch<avx512::qmatmul_block>;
    case KernelIsa::Amx:
      if (int8_tiles(t)) return repacked ? amx::qmatmul_block : via_scratch<amx::qmatmul_block>;
      [[fallthrough]];  // no tiles for this type (or no AMX-INT8): the VNNI blocks
    case KernelIsa::Avx512Bf16:
      // Every CPU with AVX-512 BF16 so far has VNNI too; check anyway.
      if (cpu_features().avx512vnni) return repacked ? vnni::qmatmul_block : via_scratch<vnni::qmatmul_block>;
      return repacked ? avx512::qmatmul_block : via_scratch<avx512::qmatmul_block>;
  }
  return portable::qmatmul_block;
}

const MatmulKernel* quant_matmul_kernel(DType t, KernelIsa isa) {
  if (!dtype_is_quantized(t)) return nullptr;
  // Built once (the blocks are picked at run time: VNNI or not); thread-safe static init.
  static const auto table = [] {
    std::array<std::array<MatmulKernel, kTypes>, kIsas> k{};
    for (int i = 0; i < kTypes; ++i) {
      const DType d = DType(i);
      if (!dtype_is_quantized(d)) continue;
      k[int(KernelIsa::Portable)][i] = make_kernel<KernelIsa::Portable>(d);
      k[int(KernelIsa::Avx2)][i] = make_kernel<KernelIsa::Avx2>(d);
      k[int(KernelIsa::Avx512)][i] = make_kernel<KernelIsa::Avx512>(d);
      k[int(KernelIsa::Avx512Bf16)][i] = make_kernel<KernelIsa::Avx512Bf16>(d);
      // Activations are quantized as on AVX-512 BF16 (the same bytes on every level); tiles take
      // bigger row blocks, as each group's unpacked codes then serve more rows.
      k[int(KernelIsa::Amx)][i] = make_kernel<KernelIsa::Avx512Bf16>(d);
      k[int(KernelIsa::Amx)][i].block = qblock_fn(KernelIsa::Amx, d);
      if (int8_tiles(d)) {
        MatmulKernel& a = k[int(KernelIsa::Amx)][i];
        a.max_rows = amx::kQuantTileMaxRows;
        // Past that, row bands (kernels/matmul_kernel.h) over all of K: a group's codes are
        // unpacked once per block call, so a band of 256 rows unpacks them half as often as four
        // 128-row blocks, and its int8 rows stay in L2 beside the unpacked panel.
        a.band_act_bytes = amx::kQuantTileBandBytes;
        a.band_row_grain = 32;
        // Every row tile of a block passes a panel of groups unpacked once (qmatmul_amx.cpp).
        a.streams_weights = true;
      }
    }
    return k;
  }();
  return &table[size_t(isa)][size_t(t)];
}

}  // namespace dpserve::kernels
