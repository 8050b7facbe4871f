#include "kv/kv_dtype.h"

#include "core/check.h"

namespace dpserve {

std::optional<KVCacheDtype> kv_cache_dtype_from_name(const std::string& s) {
  if (s == "auto") return KVCacheDtype::kAuto;
  if (s == "fp32" || s == "float32") return KVCacheDtype::kF32;
  if (s == "bf16" || s == "bfloat16") return KVCacheDtype::kBF16;
  if (s == "int8") return KVCacheDtype::kInt8;
  if (s == "fp8_e4m3") return KVCacheDtype::kFp8E4M3;
  if (s == "fp8_e5m2") return KVCacheDtype::kFp8E5M2;
  return std::nullopt;
}

std::string to_string(KVCacheDtype d) {
  switch (d) {
    case KVCacheDtype::kAuto: return "auto";
    case KVCacheDtype::kF32: return "fp32";
    case KVCacheDtype::kBF16: return "bf16";
    case KVCacheDtype::kInt8: return "int8";
    case KVCacheDtype::kFp8E4M3: return "fp8_e4m3";
    case KVCacheDtype::kFp8E5M2: return "fp8_e5m2";
  }
  return "?";
}

std::string kv_cache_dtype_names() { return "auto, fp32, bf16, int8, fp8_e4m3, fp8_e5m2"; }

std::string kv_cache_dtype_error(const std::string& s) {
  if (kv_cache_dtype_from_name(s)) return "";
  return "unknown KV cache dtype '" + s + "' (choose " + kv_cache_dtype_names() + ")";
}

KVElem resolve_kv_elem(KVCacheDtype requested, DType weights, bool mla) {
  switch (requested) {
    case KVCacheDtype::kAuto:
      if (mla) return KVElem::kF32;
      return weights == DType::F32 ? KVElem::kF32 : KVElem::kBF16;
    case KVCacheDtype::kF32: return KVElem::kF32;
    case KVCacheDtype::kBF16: return KVElem::kBF16;
    case KVCacheDtype::kInt8: return KVElem::kInt8;
    case KVCacheDtype::kFp8E4M3: return KVElem::kFp8E4M3;
    case KVCacheDtype::kFp8E5M2: return KVElem::kFp8E5M2;
  }
  fail("--kv-cache-dtype {}: not supported", to_string(requested));
}

KVElem resolve_mla_expanded_elem(KVCacheDtype requested, DType weights) {
  return resolve_kv_elem(requested, weights, false) == KVElem::kF32 ? KVElem::kF32 : KVElem::kBF16;
}

}  // namespace dpserve
