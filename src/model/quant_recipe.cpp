#include "model/quant_recipe.h"

namespace dpserve {

const char* to_string(Quantization q) {
  switch (q) {
    case Quantization::kNone: return "none";
    case Quantization::kQ8_0: return "q8_0";
    case Quantization::kQ4_0: return "q4_0";
    case Quantization::kQ4_K: return "q4_k";
    case Quantization::kQ4_K_M: return "q4_k_m";
  }
  return "?";
}

std::vector<Quantization> all_quantizations() {
  return {Quantization::kNone, Quantization::kQ8_0, Quantization::kQ4_0, Quantization::kQ4_K, Quantization::kQ4_K_M};
}

std::optional<Quantization> quantization_from_name(const std::string& name) {
  for (Quantization q : all_quantizations())
    if (name == to_string(q)) return q;
  if (name == "w8a8_int8") return Quantization::kQ8_0;
  return std::nullopt;
}

std::string quantization_refusal(const std::string& name) {
  for (const char* n : {"fp8", "w8a8_fp8", "modelopt", "modelopt_fp4", "w4afp8", "mxfp4", "petit_nvfp4"})
    if (name == n)
      return "floating-point 8/4-bit formats need GPU kernels; on CPU use q8_0 (int8) or q4_k (an fp8 checkpoint "
             "loads without this flag)";
  for (const char* n : {"awq", "awq_marlin", "gptq", "gptq_marlin", "marlin", "bitsandbytes", "compressed-tensors",
                        "moe_wna16", "qoq", "gguf", "quark", "auto-round"})
    if (name == n)
      return "it names a pre-quantized checkpoint format; dpserve quantizes bf16/f16/f32 weights on load, and "
             "reads GGUF files and fp8 checkpoints (quant_method fp8, compressed-tensors float-quantized) by "
             "--model-path without this flag";
  return "";
}

namespace {

// llama.cpp's "use more bits" layers of Q4_K_M: the first and last eighth, and every third between.
bool more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

}  // namespace

DType quantized_type(Quantization q, WeightRole role, int64_t layer, int64_t n_layers, int64_t cols, DType stored) {
  if (q == Quantization::kNone || dtype_is_quantized(stored) || role == WeightRole::kRouter || role == WeightRole::kKeep)
    return stored;
  DType t = DType::Q8_0;
  switch (q) {
    case Quantization::kQ8_0: t = DType::Q8_0; break;
    case Quantization::kQ4_0: t = role == WeightRole::kLmHead ? DType::Q6_K : DType::Q4_0; break;
    case Quantization::kQ4_K: t = role == WeightRole::kLmHead ? DType::Q6_K : DType::Q4_K; break;
    case Quantization::kQ4_K_M:
      t = DType::Q4_K;
      if (role == WeightRole::kLmHead ||
          ((role == WeightRole::kAttnV || role == WeightRole::kMlpDown) && layer >= 0 && more_bits(layer, n_layers)))
        t = DType::Q6_K;
      break;
    case Quantization::kNone: return stored;
  }
  if (dtype_row_splits(t, cols)) return t;
  // Rows that are not whole 256-element blocks (llama.cpp falls back the same way).
  if (t == DType::Q6_K && dtype_row_splits(DType::Q8_0, cols)) return DType::Q8_0;
  if (t == DType::Q4_K && dtype_row_splits(DType::Q4_0, cols)) return DType::Q4_0;
  return stored;  // not even whole 32-element blocks: stays float
}

}  // namespace dpserve
