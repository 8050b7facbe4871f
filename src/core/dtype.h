// Element types of weights and activations, including llama.cpp's block-quantized formats.
//
// A block type stores `block_elems` consecutive elements of one row in `block_bytes` bytes
// (scales and quants together, GGML's layout byte for byte, so GGUF tensors are used in place).
// Float types are blocks of one element. A row of n elements must be a whole number of blocks.
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
};

struct DTypeTraits {
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
};

inline constexpr DTypeTraits dtype_traits(DType t) {
  switch (t) {
    case DType::F32: return {"F32", 1, 4};
    case DType::BF16: return {"BF16", 1, 2};
    case DType::F16: return {"F16", 1, 2};
    case DType::Q8_0: return {"Q8_0", 32, 34};
    case DType::Q4_0: return {"Q4_0", 32, 18};
    case DType::Q4_K: return {"Q4_K", 256, 144};
    case DType::Q5_K: return {"Q5_K", 256, 176};
    case DType::Q6_K: return {"Q6_K", 256, 210};
  }
  return {"?", 1, 1};
}

inline bool dtype_is_quantized(DType t) { return dtype_traits(t).block_elems > 1; }
inline int64_t dtype_block_elems(DType t) { return dtype_traits(t).block_elems; }
inline int64_t dtype_block_bytes(DType t) { return dtype_traits(t).block_bytes; }
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }

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
