// Element types of weights and activations.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dpserve {

enum class DType { F32, BF16, F16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
  }
  return "?";
}

}  // namespace dpserve
