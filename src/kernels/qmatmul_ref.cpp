// The scalar reference of kernels/qmatmul.h, on GGML's plain blocks; also the portable path
// (repacked weights are gathered back to plain rows first).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/qmatmul.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/quant_act.h"
#include "kernels/repack.h"

namespace dpserve {

namespace {

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// 6-bit scale and min j of a Q4_K / Q5_K block (GGML's packing; dequant.cpp has the same).
void scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Unsigned code of element k of a plain block (as GGML stores it).
int code(DType t, const uint8_t* b, int k) {
  switch (t) {
    case DType::Q8_0: return int8_t(b[2 + k]);
    case DType::Q4_0: return k < 16 ? (b[2 + k] & 15) : (b[2 + k - 16] >> 4);
    case DType::Q4_K: return (k % 64 < 32) ? (b[16 + 32 * (k / 64) + k % 32] & 15) : (b[16 + 32 * (k / 64) + k % 32] >> 4);
    case DType::Q5_K: {
      const int lo = (k % 64 < 32) ? (b[48 + 32 * (k / 64) + k % 32] & 15) : (b[48 + 32 * (k / 64) + k % 32] >> 4);
      return lo | (((b[16 + k % 32] >> (k / 32)) & 1) << 4);
    }
    case DType::Q6_K: {
      const int half = k / 128, l = k % 32, quarter = (k % 128) / 32;
      const uint8_t q = b[64 * half + l + 32 * (quarter & 1)];
      return (quarter < 2 ? (q & 15) : (q >> 4)) | (((b[128 + 32 * half + l] >> (2 * quarter)) & 3) << 4);
    }
    default: return 0;
  }
}

// acc after block b of a plain row against the activation row `a`.
float block_step(DType t, const uint8_t* blk, const QuantActRow& a, int64_t b, float acc) {
  const int8_t* q = a.q + b * dtype_block_elems(t);
  const float da = a.d[b];
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0: {
      const int off = t == DType::Q4_0 ? 8 : 0;
      int32_t D = 0;
      for (int k = 0; k < 32; ++k) D += (code(t, blk, k) - off) * q[k];
      return std::fma(float(D), f16_to_f32(load_u16(blk)) * da, acc);
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      int32_t S = 0, N = 0;
      for (int j = 0; j < 8; ++j) {
        int sc, mn;
        scale_min(blk + 4, j, sc, mn);
        int32_t dot = 0, sum = 0;
        for (int k = 32 * j; k < 32 * j + 32; ++k) {
          dot += code(t, blk, k) * q[k];
          sum += q[k];
        }
        S += sc * dot;
        N += mn * sum;
      }
      acc = std::fma(float(S), f16_to_f32(load_u16(blk)) * da, acc);
      return std::fma(float(N), -(f16_to_f32(load_u16(blk + 2)) * da), acc);
    }
    case DType::Q6_K: {
      int32_t S = 0;
      for (int j = 0; j < 16; ++j) {
        int32_t dot = 0;
        for (int k = 16 * j; k < 16 * j + 16; ++k) dot += (code(t, blk, k) - 32) * q[k];
        S += int8_t(blk[192 + j]) * dot;
      }
      return std::fma(float(S), f16_to_f32(load_u16(blk + 208)) * da, acc);
    }
    default: fail("qmatmul: {} is not a block type", dtype_name(t));
  }
}

// y[m, n] for m in [m0, m1), n in [n0, n1) from plain rows (row n at rows + (n - row0) * ld_bytes),
// written at y + (m - ym) * ldy + (n - yn).
void plain_block(DType t, const uint8_t* rows, int64_t row0, int64_t ld_bytes, const kernels::QBlockArgs& a,
                 int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t ym, int64_t yn) {
  const int64_t K = a.w.cols, nb = K / dtype_block_elems(t), bb = dtype_block_bytes(t);
  const QuantActLayout L(act_block_elems(t), K);
  for (int64_t m = m0; m < m1; ++m) {
    const QuantActRow x(static_cast<const uint8_t*>(a.act) + m * a.act_ld, L);
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = rows + (n - row0) * ld_bytes;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) acc = block_step(t, row + b * bb, x, b, acc);
      a.y[(m - ym) * a.ldy + (n - yn)] = acc;
    }
  }
}

}  // namespace

namespace kernels::portable {

void qmatmul_block(const QBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const WeightView& w = a.w;
  const DType pt = dtype_plain(w.dtype);
  const int64_t ld_bytes = dtype_row_bytes(w.dtype, w.ld);
  if (dtype_row_group(w.dtype) == 1) {
    plain_block(pt, static_cast<const uint8_t*>(w.data), 0, ld_bytes, a, m0, m1, n0, n1, m0, n0);
    return;
  }
  // Repacked: gather each group's rows back to plain blocks, then the same loop.
  const int64_t row_bytes = dtype_row_bytes(pt, w.cols);
  thread_local std::vector<uint8_t> plain;
  plain.resize(size_t(16 * row_bytes));
  for (int64_t g0 = n0 / 16 * 16; g0 < n1; g0 += 16) {
    const uint8_t* group = static_cast<const uint8_t*>(w.data) + g0 * ld_bytes;
    for (int r = 0; r < 16 && g0 + r < w.rows; ++r) deinterleave_row(w.dtype, group, r, w.cols, plain.data() + r * row_bytes);
    plain_block(pt, plain.data(), g0, row_bytes, a, m0, m1, std::max(n0, g0), std::min(n1, g0 + 16), m0, n0);
  }
}

}  // namespace kernels::portable

namespace ref {

void qmatmul(const float* x, int64_t M, int64_t ldx, const WeightView& w, const float* bias, float* y, int64_t ldy) {
  if (!dtype_is_quantized(w.dtype)) fail("ref::qmatmul: {} weights are not block-quantized", dtype_name(w.dtype));
  QuantActs acts;
  acts.reset(act_block_elems(w.dtype), M, w.cols);
  quantize_acts(KernelIsa::Portable, x, ldx, 0, M, acts);
  kernels::QBlockArgs a;
  a.act = acts.row(0);
  a.act_ld = acts.ld();
  a.w = w;
  a.y = y;
  a.ldy = ldy;
  kernels::portable::qmatmul_block(a, 0, M, 0, w.rows);
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < w.rows; ++n) y[m * ldy + n] += bias[n];
}

}  // namespace ref

}  // namespace dpserve
