// Which kernel computes a product: by (weight format, ISA, M). New formats register here.
#include <cstring>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/matmul_kernel.h"
#include "kernels/qmatmul_impl.h"
#include "kernels/repack.h"

namespace dpserve::kernels {

namespace {

// f32_to_bf16 (core/bf16.h) without a branch, so the loop vectorises.
inline uint16_t round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// BF16_X16 / F16_X16 (X16) weights on the portable level, which has no kernel for them (tests
// forcing a level; weights are only repacked where such a kernel runs): the block's rows back to
// plain bf16 / f16, then the level's plain kernel, so the results are that kernel's bit for bit.
template <DType X16, const MatmulKernel& Plain>
void unpacked_x16_block(const MatmulBlockArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  thread_local std::vector<uint16_t> rows;
  const int64_t K = a.w.cols, G = dtype_row_group(X16);
  rows.resize(size_t((n1 - n0) * K));
  const uint8_t* w = static_cast<const uint8_t*>(a.w.data);
  const int64_t group_bytes = G * dtype_row_bytes(X16, a.w.ld);
  for (int64_t n = n0; n < n1; ++n)
    deinterleave_row(X16, w + (n / G) * group_bytes, int(n % G), K, reinterpret_cast<uint8_t*>(&rows[size_t((n - n0) * K)]));
  MatmulBlockArgs b = a;
  b.w = WeightView{rows.data(), dtype_plain(X16), n1 - n0, K, K};
  Plain.block(b, m0, m1, 0, n1 - n0);
}

template <DType X16, const MatmulKernel& Plain>
const MatmulKernel kUnpackedX16{Plain.name, Plain.act_row_bytes, Plain.prepare_row, &unpacked_x16_block<X16, Plain>, 16,
                                Plain.max_rows};

}  // namespace

int64_t bf16_act_row_bytes(int64_t K) { return (K + kBf16Pad - 1) / kBf16Pad * kBf16Pad * 2; }

void bf16_prepare_row(const float* x, int64_t K, void* dst) {
  uint16_t* out = static_cast<uint16_t*>(dst);
  const int64_t kp = (K + kBf16Pad - 1) / kBf16Pad * kBf16Pad;
  for (int64_t k = 0; k < K; ++k) out[k] = round_bf16(x[k]);
  for (int64_t k = K; k < kp; ++k) out[k] = 0;
}

int64_t bf16f32_act_row_bytes(int64_t K) { return (K + kBf16Pad - 1) / kBf16Pad * kBf16Pad * 4; }

void bf16f32_prepare_row(const float* x, int64_t K, void* dst) {
  float* out = static_cast<float*>(dst);
  const int64_t kp = (K + kBf16Pad - 1) / kBf16Pad * kBf16Pad;
  for (int64_t k = 0; k < K; ++k) {
    const uint32_t u = uint32_t(round_bf16(x[k])) << 16;
    std::memcpy(&out[k], &u, 4);
  }
  for (int64_t k = K; k < kp; ++k) out[k] = 0.0f;
}

int64_t f32_act_row_bytes(int64_t K) { return (K + 15) / 16 * 16 * 4; }

void f32_prepare_row(const float* x, int64_t K, void* dst) {
  float* out = static_cast<float*>(dst);
  std::memcpy(out, x, size_t(K) * 4);
  for (int64_t k = K; k < (K + 15) / 16 * 16; ++k) out[k] = 0.0f;
}

const MatmulKernel* find_matmul_kernel(DType w, KernelIsa isa, int64_t /*M*/) {
  if (dtype_is_quantized(w)) return quant_matmul_kernel(w, isa);  // kernels/qmatmul.cpp
  if (w == DType::BF16_X16) {
    switch (isa) {
      case KernelIsa::Amx: return &amx::kBf16X16;
      case KernelIsa::Avx512Bf16: return bf16_fma_products() ? &avx512::kBf16X16 : &avx512bf16::kBf16X16;
      case KernelIsa::Avx512: return &avx512::kBf16X16;
      case KernelIsa::Avx2: return &avx2::kBf16X16;
      case KernelIsa::Portable: return &kUnpackedX16<DType::BF16_X16, portable::kBf16>;
    }
    return nullptr;
  }
  if (w == DType::F16_X16) {  // fp32 FMAs at every AVX-512 level (no bf16 instruction reads f16)
    switch (isa) {
      case KernelIsa::Amx:
      case KernelIsa::Avx512Bf16:
      case KernelIsa::Avx512: return &avx512::kF16X16;
      case KernelIsa::Avx2: return &avx2::kF16X16;
      case KernelIsa::Portable: return &kUnpackedX16<DType::F16_X16, portable::kF16>;
    }
    return nullptr;
  }
  switch (isa) {
    case KernelIsa::Amx:  // plain bf16 (not repacked: a row of partial chunks) and F32 / F16 as below
    case KernelIsa::Avx512Bf16:
      if (w == DType::BF16) return bf16_fma_products() ? &avx512::kBf16 : &avx512bf16::kBf16;
      [[fallthrough]];
    case KernelIsa::Avx512:
      switch (w) {
        case DType::F32: return &avx512::kF32;
        case DType::F16: return &avx512::kF16;
        case DType::BF16: return &avx512::kBf16;
        default: return nullptr;
      }
    case KernelIsa::Avx2:
      switch (w) {
        case DType::F32: return &avx2::kF32;
        case DType::F16: return &avx2::kF16;
        case DType::BF16: return &avx2::kBf16;
        default: return nullptr;
      }
    case KernelIsa::Portable:
      switch (w) {
        case DType::F32: return &portable::kF32;
        case DType::F16: return &portable::kF16;
        case DType::BF16: return &portable::kBf16;
        default: return nullptr;
      }
  }
  return nullptr;
}

}  // namespace dpserve::kernels
