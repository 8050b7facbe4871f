// --kv-cache-dtype (SGLang's flag): what the user asks the KV cache to hold, and what that
// means for a given model. `auto` follows the model as SGLang's does: fp32 for a model stored in
// fp32, bf16 for one stored in bf16 / f16 or block-quantized (GGUF); MLA's latent stays fp32
// under `auto` (its c_kv is shared by every head, so its error reaches all of them).
#pragma once

#include <optional>
#include <string>

#include "core/dtype.h"
#include "kernels/attention.h"

namespace dpserve {

enum class KVCacheDtype { kAuto, kF32, kBF16, kInt8, kFp8E4M3, kFp8E5M2 };

// "auto", "fp32" (also "float32"), "bf16" (also "bfloat16"), "int8", "fp8_e4m3", "fp8_e5m2";
// nullopt for any other name.
std::optional<KVCacheDtype> kv_cache_dtype_from_name(const std::string& s);
std::string to_string(KVCacheDtype d);
// The names the flag accepts, for errors and --help.
std::string kv_cache_dtype_names();
// What a --kv-cache-dtype validator answers: "" for a name the flag accepts, else the error naming
// the choices.
std::string kv_cache_dtype_error(const std::string& s);

// The element type a model's KV cache gets: `weights` is the model's stored dtype
// (ModelConfig::dtype), `mla` whether its cache is MLA's latent.
KVElem resolve_kv_elem(KVCacheDtype requested, DType weights, bool mla);

// What MLA's decompressed form (a long prompt's prefill) holds its per-head keys and values in over
// an fp32 latent: what a model without MLA of the same weights would cache under `requested`,
// fp32 (asked for, or fp32 weights) or bf16 (`auto` for bf16 / f16 / quantized weights: a long
// prompt's attention then runs on bf16 products, as it would for their GQA cache). Over a compact
// latent they are bf16 whatever this says (the latent holds less than that).
KVElem resolve_mla_expanded_elem(KVCacheDtype requested, DType weights);

}  // namespace dpserve
