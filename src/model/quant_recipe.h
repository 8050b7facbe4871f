// Quantize-on-load recipes (--quantization): the block type each weight matrix of a float
// (bf16 / f16 / f32) model becomes. Matrices already in a block type (GGUF files) keep theirs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dpserve {

enum class Quantization {
  kNone,    // weights as stored
  kQ8_0,    // every matrix Q8_0
  kQ4_0,    // Q4_0, the LM head Q6_K (as llama.cpp's Q4_0 files)
  kQ4_K,    // Q4_K, the LM head Q6_K
  kQ4_K_M,  // llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the LM head and for v_proj / down_proj
            // in the first and last eighth of the layers and every third layer between
};

const char* to_string(Quantization q);
std::vector<Quantization> all_quantizations();
// Values of --quantization that name one of ours, with the SGLang spellings that mean the same
// (w8a8_int8: int8 weights, int8 activations quantized per token block -> q8_0).
std::optional<Quantization> quantization_from_name(const std::string& name);
// Why a value SGLang knows (fp8, awq, gptq, ...) is refused here; empty for unknown names.
std::string quantization_refusal(const std::string& name);

// What a matrix is, for the recipes (llama.cpp's rules differ by role).
// kKeep: never quantized (only repacked or copied), e.g. MLA's kv_b_proj, whose transposed copy
// for the absorbed form is made from the stored values.
enum class WeightRole { kAttnQ, kAttnK, kAttnV, kAttnO, kMlpGate, kMlpUp, kMlpDown, kRouter, kLmHead, kKeep };

// The type a float matrix of `role` in layer `layer` (of n_layers; -1 outside the layers) with
// `cols` input features becomes; the float type itself for "keep". A K type falls back to Q4_0,
// and Q6_K to Q8_0, where `cols` is not a whole number of 256-element blocks.
DType quantized_type(Quantization q, WeightRole role, int64_t layer, int64_t n_layers, int64_t cols, DType stored);

}  // namespace dpserve
