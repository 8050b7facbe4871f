// GGML tensor types as GGUF files store them: the name and block size of every type a file may
// hold (so any file's tensor sizes can be checked), and which of them dpserve computes with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/dtype.h"

namespace dpserve {

struct GgmlTypeInfo {
  const char* name;     // as llama.cpp spells it ("Q4_K", "IQ2_XXS")
  int64_t block_elems;  // elements of one row per block
  int64_t block_bytes;  // bytes of one block
};

// GGML ids the loader converts (Q5_0 / Q5_1 / MXFP4) or converts to.
constexpr uint32_t kGgmlBf16 = 30, kGgmlMxfp4 = 39;

// The type with GGML id `id`, or null for an id no GGML version defines.
const GgmlTypeInfo* ggml_type_info(uint32_t id);

// The DType dpserve computes with for GGML id `id`; nullopt for a type it cannot use (IQ*, Q2_K, ...).
std::optional<DType> ggml_type_to_dtype(uint32_t id);

// "Q4_K" for a known id, "type 99" otherwise (error messages).
std::string ggml_type_name(uint32_t id);

}  // namespace dpserve
