#include "model/gguf_types.h"

#include <array>

namespace dpserve {

namespace {

// Indexed by GGML type id (ggml.h); block sizes from ggml-common.h's block structs. Ids GGML
// retired (4, 5, 31-33, 36-38) stay empty: a file using them is corrupt or from another world.
constexpr std::array<GgmlTypeInfo, 43> kTypes = {{
    {"F32", 1, 4},         // 0
    {"F16", 1, 2},         // 1
    {"Q4_0", 32, 18},      // 2
    {"Q4_1", 32, 20},      // 3
    {nullptr, 0, 0},       // 4 (Q4_2, removed)
    {nullptr, 0, 0},       // 5 (Q4_3, removed)
    {"Q5_0", 32, 22},      // 6
    {"Q5_1", 32, 24},      // 7
    {"Q8_0", 32, 34},      // 8
    {"Q8_1", 32, 36},      // 9
    {"Q2_K", 256, 84},     // 10
    {"Q3_K", 256, 110},    // 11
    {"Q4_K", 256, 144},    // 12
    {"Q5_K", 256, 176},    // 13
    {"Q6_K", 256, 210},    // 14
    {"Q8_K", 256, 292},    // 15
    {"IQ2_XXS", 256, 66},  // 16
    {"IQ2_XS", 256, 74},   // 17
    {"IQ3_XXS", 256, 98},  // 18
    {"IQ1_S", 256, 50},    // 19
    {"IQ4_NL", 32, 18},    // 20
    {"IQ3_S", 256, 110},   // 21
    {"IQ2_S", 256, 82},    // 22
    {"IQ4_XS", 256, 136},  // 23
    {"I8", 1, 1},          // 24
    {"I16", 1, 2},         // 25
    {"I32", 1, 4},         // 26
    {"I64", 1, 8},         // 27
    {"F64", 1, 8},         // 28
    {"IQ1_M", 256, 56},    // 29
    {"BF16", 1, 2},        // 30
    {nullptr, 0, 0},       // 31 (Q4_0_4_4, removed from files)
    {nullptr, 0, 0},       // 32 (Q4_0_4_8)
    {nullptr, 0, 0},       // 33 (Q4_0_8_8)
    {"TQ1_0", 256, 54},    // 34
    {"TQ2_0", 256, 66},    // 35
    {nullptr, 0, 0},       // 36 (IQ4_NL_4_4)
    {nullptr, 0, 0},       // 37 (IQ4_NL_4_8)
    {nullptr, 0, 0},       // 38 (IQ4_NL_8_8)
    {"MXFP4", 32, 17},     // 39
    {"NVFP4", 64, 36},     // 40
    {"Q1_0", 128, 18},     // 41
    {"Q2_0", 64, 18},      // 42
}};

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  if (id >= kTypes.size() || kTypes[id].name == nullptr) return nullptr;
  return &kTypes[id];
}

std::optional<DType> ggml_type_to_dtype(uint32_t id) {
  switch (id) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 30: return DType::BF16;
    case 8: return DType::Q8_0;
    case 2: return DType::Q4_0;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    default: return std::nullopt;
  }
}

std::string ggml_type_name(uint32_t id) {
  const GgmlTypeInfo* t = ggml_type_info(id);
  return t ? std::string(t->name) : "type " + std::to_string(id);
}

}  // namespace dpserve
