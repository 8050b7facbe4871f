// Element types of weights and activations, including llama.cpp's block-quantized formats.
//
// A block type stores `block_elems` consecutive elements of one row in `block_bytes` bytes
// (scales and quants together, GGML's layout byte for byte, so GGUF tensors are used in place).
// Float types are blocks of one element. A row of n elements must be a whole number of blocks.
//
// The *_X16 types hold the same blocks repacked for the int8 kernels (kernels/repack.h): rows in
// groups of 16, each block's 16 rows interleaved four bytes at a time. BF16_X16 holds bf16 weights
// the same way: 16 rows interleaved four bytes (two elements) at a time, so one 64-byte load is
// "two consecutive elements of 16 rows", the operand of vdpbf16ps with one accumulator lane per row.
// F16_X16 holds f16 weights as 16 rows transposed: element k of the 16 rows is 32 bytes (one
// vcvtph2ps to 16 fp32 lanes, a lane per row). A row still takes `block_bytes` per block, so sizes and row offsets are the
// plain type's; only whole groups of rows can be addressed. Layers never see the difference: the
// matmul dispatches on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dpserve {

enum class DType {
  F32,
  BF16,
  F16,
  Q8_0,  // 32 elements: f16 scale, 32 x int8                         (34 bytes, 8.5 bits/weight)
  Q4_0,  // 32 elements: f16 scale, 32 x 4-bit (q - 8)                (18 bytes, 4.5 bits/weight)
  Q4_K,  // 256 elements: f16 d, f16 dmin, 8 x 6-bit scale/min, 4-bit (144 bytes, 4.5 bits/weight)
  Q5_K,  // 256 elements: as Q4_K plus one high bit per element       (176 bytes, 5.5 bits/weight)
  Q6_K,  // 256 elements: 4+2-bit quants, 16 x int8 scales, f16 d    (210 bytes, 6.5625 bits/weight)
  // Repacked (16-row interleaved) forms of the five above; layouts in kernels/repack.h.
  Q8_0_X16,
  Q4_0_X16,
  Q4_K_X16,
  Q5_K_X16,
  Q6_K_X16,
  BF16_X16,  // bf16 in 16-row groups, 16 rows interleaved two elements at a time (kernels/repack.h); rows of whole 32-element chunks
  F16_X16,   // f16 in 16-row groups, the 16 rows' element k side by side (kernels/repack.h); rows of whole 32-element chunks
  // OCP fp8 E4M3 of an fp8 checkpoint (DeepSeek-V3's, Qwen3-FP8's), read only with its block scales
  // (WeightView::fp8): no kernel runs it, the load converts it (model/weight_prep.h).
  F8_E4M3,
};

struct DTypeTraits {
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  int64_t row_group = 1;  // rows stored interleaved (16 for the *_X16 types)
  bool quantized = false;  // integer codes with scales (a block of floats is not)
};

inline constexpr DTypeTraits dtype_traits(DType t) {
  switch (t) {
    case DType::F32: return {"F32", 1, 4};
    case DType::BF16: return {"BF16", 1, 2};
    case DType::F16: return {"F16", 1, 2};
    case DType::Q8_0: return {"Q8_0", 32, 34, 1, true};
    case DType::Q4_0: return {"Q4_0", 32, 18, 1, true};
    case DType::Q4_K: return {"Q4_K", 256, 144, 1, true};
    case DType::Q5_K: return {"Q5_K", 256, 176, 1, true};
    case DType::Q6_K: return {"Q6_K", 256, 210, 1, true};
    case DType::Q8_0_X16: return {"Q8_0x16", 32, 34, 16, true};
    case DType::Q4_0_X16: return {"Q4_0x16", 32, 18, 16, true};
    case DType::Q4_K_X16: return {"Q4_Kx16", 256, 144, 16, true};
    case DType::Q5_K_X16: return {"Q5_Kx16", 256, 176, 16, true};
    case DType::Q6_K_X16: return {"Q6_Kx16", 256, 210, 16, true};
    case DType::BF16_X16: return {"BF16x16", 32, 64, 16};
    case DType::F16_X16: return {"F16x16", 32, 64, 16};
    case DType::F8_E4M3: return {"F8_E4M3", 1, 1};
  }
  return {"?", 1, 1};
}

inline bool dtype_is_quantized(DType t) { return dtype_traits(t).quantized; }
inline int64_t dtype_block_elems(DType t) { return dtype_traits(t).block_elems; }
inline int64_t dtype_block_bytes(DType t) { return dtype_traits(t).block_bytes; }
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }
inline int64_t dtype_row_group(DType t) { return dtype_traits(t).row_group; }

// The block type a repacked type holds (Q4_0_X16 -> Q4_0); other types map to themselves.
inline constexpr DType dtype_plain(DType t) {
  switch (t) {
    case DType::Q8_0_X16: return DType::Q8_0;
    case DType::Q4_0_X16: return DType::Q4_0;
    case DType::Q4_K_X16: return DType::Q4_K;
    case DType::Q5_K_X16: return DType::Q5_K;
    case DType::Q6_K_X16: return DType::Q6_K;
    case DType::BF16_X16: return DType::BF16;
    case DType::F16_X16: return DType::F16;
    default: return t;
  }
}

// The repacked form of a block type (Q4_0 -> Q4_0_X16, BF16 -> BF16_X16, F16 -> F16_X16); F32 and repacked
// types map to themselves.
inline constexpr DType dtype_interleaved(DType t) {
  switch (t) {
    case DType::Q8_0: return DType::Q8_0_X16;
    case DType::Q4_0: return DType::Q4_0_X16;
    case DType::Q4_K: return DType::Q4_K_X16;
    case DType::Q5_K: return DType::Q5_K_X16;
    case DType::Q6_K: return DType::Q6_K_X16;
    case DType::BF16: return DType::BF16_X16;
    case DType::F16: return DType::F16_X16;
    default: return t;
  }
}

// Bytes of one element: float types only (block types have no per-element size).
inline size_t dtype_size(DType t) { return size_t(dtype_traits(t).block_bytes / dtype_traits(t).block_elems); }

// Bytes of n consecutive elements of a row; n must be a whole number of blocks (callers check
// with dtype_row_splits first where n comes from a file or a flag).
inline int64_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeTraits tr = dtype_traits(t);
  return n / tr.block_elems * tr.block_bytes;
}

// Whether n elements are a whole number of blocks.
inline bool dtype_row_splits(DType t, int64_t n) { return n % dtype_traits(t).block_elems == 0; }

}  // namespace dpserve
