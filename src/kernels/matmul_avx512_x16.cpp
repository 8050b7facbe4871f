// AVX-512 FMA matmul blocks for BF16_X16 and F16_X16 weights (16-row groups, kernels/repack.h): the outer
// product of matmul_avx512bf16_x16.cpp with fp32 FMAs instead of vdpbf16ps. One 64-byte load is
// a pair of elements of 16 weight rows; shifted left by 16 it is element 2p of the 16 rows as
// fp32, with the low halves masked off element 2p + 1. Each is multiplied by the activation row's
// element (its bf16 rounding held as fp32, broadcast from memory) into an accumulator whose lane r
// is output row r. A tile is up to 8 activation rows x 3 groups (per pair, 3 weight loads and 6
// integer ops feed 48 FMAs), or for more rows up to 24 rows x 1 group (1 load and 2 integer ops
// feed 48 FMAs).
//
// Why beside the vdpbf16ps kernel: on Intel cores `vdpbf16ps` zmm issues about once every two
// cycles while two 512-bit FMAs issue a cycle (an Emerald Rapids Xeon: 1.33 G vdpbf16ps/s against
// 5.5 G FMA/s on one core, 12 independent chains), so fp32 FMAs do twice its products there. On
// Zen 4 / 5 it is the other way round (kernels/isa.h, bf16_fma_products). CPUs with AVX-512 but
// no BF16 (Skylake-SP to Ice Lake) take this block too.
//
// F16_X16 weights take the same block: a pair line of that layout is element 2p of the 16 rows
// in its first 32 bytes and 2p + 1 in its second, each widened exactly by one vcvtph2ps, and the
// activations are fp32 as they are (f16 weights had run on plain rows, a dot product a row).
//
// Every y[m, n] is one sequence whatever the tile or block: lane n % 16 of one accumulator, starting
// at zero, takes K's elements in order (through y between K panels, which stores and reloads it
// exactly). So a row's result never depends on the other rows of the batch.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/matmul.h"
#include "kernels/matmul_kernel.h"  // before the target region: its std headers stay generic

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2"))), apply_to = function)
#endif

namespace dpserve::kernels::avx512 {

namespace {

#include "kernels/matmul_x16_avx512_block.h"

// One tile (matmul_x16_avx512_block.h) of BF16_X16 weights, or of F16_X16 ones when F16. The
// prefetches `ahead` are the first row tile's, which streams the weights from memory
// (kernels::bf16_weight_prefetch()).
template <bool F16, int MR, int NR>
void tile(const float* x, int64_t ldx, const uint16_t* wg, int64_t group_ld, int64_t p0, int64_t p1, float* y,
          int64_t ldy, __mmask16 last, bool first, int64_t ahead) {
  __m512 acc[MR][NR];
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
      acc[i][j] = first ? _mm512_setzero_ps()
                        : _mm512_maskz_loadu_ps(j == NR - 1 ? last : __mmask16(0xFFFF), y + i * ldy + kRows * j);
  for (int64_t p = p0; p < p1; ++p) {
    if (ahead > 0) {
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(wg + j * group_ld + (p + ahead) * kPairElems), _MM_HINT_T1);
    }
    // One group at a time: its two weight vectors and the tile's accumulators fit the 32
    // registers, and the activations come as FMA memory operands (embedded broadcasts).
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const uint16_t* line = wg + j * group_ld + p * kPairElems;
      __m512 we, wo;
      if constexpr (F16) {
        we = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(line)));
        wo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(line + kRows)));
      } else {
        const __m512i odd = _mm512_set1_epi32(int(0xffff0000u));
        __m512i pair = _mm512_loadu_si512(line);
        asm("" : "+v"(pair));  // one load for both halves (GCC folds it into each otherwise)
        we = _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16));
        wo = _mm512_castsi512_ps(_mm512_and_si512(pair, odd));
      }
      // Hidden from the optimiser, so it does not keep the 16 broadcasts in registers across the
      // groups (which spilled accumulators to the stack) instead of folding them into the FMAs.
      const float* xp = x + 2 * p;
      if constexpr (MR > 2) asm volatile("" : "+r"(xp));
#pragma GCC unroll 24
      for (int i = 0; i < MR; ++i) {
        const float* xi = xp + i * ldx;
        acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(xi[1]), wo, _mm512_fmadd_ps(_mm512_set1_ps(xi[0]), we, acc[i][j]));
      }
    }
  }
#pragma GCC unroll 24
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j)
      _mm512_mask_storeu_ps(y + i * ldy + kRows * j, j == NR - 1 ? last : __mmask16(0xFFFF), acc[i][j]);
}

template <bool F16, int MR>
constexpr TileFn<float> kTileRow[kNR] = {&tile<F16, MR, 1>, &tile<F16, MR, 2>, &tile<F16, MR, 3>};
template <bool F16>
constexpr const TileFn<float>* kTiles[kMR] = {kTileRow<F16, 1>, kTileRow<F16, 2>, kTileRow<F16, 3>, kTileRow<F16, 4>,
                                              kTileRow<F16, 5>, kTileRow<F16, 6>, kTileRow<F16, 7>, kTileRow<F16, 8>};
// Taller tiles for more rows: one group, up to 24 rows (24 accumulators), so a weight line's
// widening (2 integer ops, or 2 vcvtph2ps of 2 uops each, on the FMA ports) is paid once per 48
// FMAs instead of 16. Prefill 512 1.02-1.03x for bf16, 1.04-1.05x for f16 (docs/kernels.md).
constexpr int kTallMR = 24, kTallNR = 1;
template <bool F16, int MR>
constexpr TileFn<float> kTallRow[kTallNR] = {&tile<F16, MR, 1>};
template <bool F16>
constexpr const TileFn<float>* kTallTiles[kTallMR] = {
    kTallRow<F16, 1>, kTallRow<F16, 2>, kTallRow<F16, 3>, kTallRow<F16, 4>, kTallRow<F16, 5>, kTallRow<F16, 6>,
    kTallRow<F16, 7>, kTallRow<F16, 8>, kTallRow<F16, 9>, kTallRow<F16, 10>, kTallRow<F16, 11>, kTallRow<F16, 12>,
    kTallRow<F16, 13>, kTallRow<F16, 14>, kTallRow<F16, 15>, kTallRow<F16, 16>, kTallRow<F16, 17>, kTallRow<F16, 18>,
    kTallRow<F16, 19>, kTallRow<F16, 20>, kTallRow<F16, 21>, kTallRow<F16, 22>, kTallRow<F16, 23>, kTallRow<F16, 24>};

// Up to 8 rows (decode, small batches): 3 groups a tile, three weight streams and 3 MR independent
// accumulator chains; more rows: the tall tiles. Either way each output is one lane's sequence.
template <bool F16>
void block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (m1 - m0 > kMR) return x16_block<float, kTallMR, kTallNR, kTallTiles<F16>>(a, m0, m1, n0, n1);
  x16_block<float, kMR, kNR, kTiles<F16>>(a, m0, m1, n0, n1);
}

}  // namespace

// Column blocks of whole 3-group tiles; up to 96 rows (4 tall tiles) pass a block's weights in L2.
const MatmulKernel kBf16X16{"avx512 bf16x16", bf16f32_act_row_bytes, bf16f32_prepare_row, block<false>, kNR * kRows,
                            4 * kTallMR};
const MatmulKernel kF16X16{"avx512 f16x16", f32_act_row_bytes, f32_prepare_row, block<true>, kNR * kRows, 4 * kTallMR};

}  // namespace dpserve::kernels::avx512

#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
