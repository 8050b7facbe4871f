#include "apps/dpserve/kv_flags.h"

#include <string>

namespace dpserve::app {

void add_kv_cache_flags(CLI::App* c, RuntimeOptions& o) {
  c->add_option_function<std::string>(
       "--kv-cache-dtype", [&o](const std::string& s) { o.kv_cache_dtype = *kv_cache_dtype_from_name(s); },
       "How the KV cache stores K and V (and MLA's latent): auto (the model's: fp32 for a model stored in "
       "fp32, bf16 for bf16 / f16 / GGUF-quantized ones; MLA's latent stays fp32), fp32, bf16 (half the "
       "bytes), int8 (a quarter, plus one fp32 scale per position per KV head). The KV budget counts bytes, "
       "so smaller values hold more tokens. fp8_e4m3 / fp8_e5m2 are not implemented yet")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            const auto d = kv_cache_dtype_from_name(s);
            if (!d) return "unknown KV cache dtype '" + s + "' (choose " + kv_cache_dtype_names() + ")";
            const std::string why = kv_cache_dtype_refusal(*d);
            return why.empty() ? "" : "'" + s + "' is not supported: " + why;
          },
          "DTYPE"))
      ->default_str("auto")
      ->envname("DPSERVE_KV_CACHE_DTYPE");
}

}  // namespace dpserve::app
