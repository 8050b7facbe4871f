#include "apps/dpserve/kv_flags.h"

#include <string>

namespace dpserve::app {

void add_kv_cache_flags(CLI::App* c, RuntimeOptions& o) {
  c->add_option_function<std::string>(
       "--kv-cache-dtype", [&o](const std::string& s) { o.kv_cache_dtype = *kv_cache_dtype_from_name(s); },
       "How the KV cache stores K and V (and MLA's latent): auto (the model's: fp32 for a model stored in "
       "fp32, bf16 for bf16 / f16 / GGUF-quantized ones; MLA's latent stays fp32, a long prompt's decompressed "
       "K and V follow the weights as other models' caches do), fp32 (MLA: every step in fp32), bf16 (half the "
       "bytes), int8 (a quarter, plus one fp32 scale per position per KV head), fp8_e4m3 / fp8_e5m2 (a "
       "quarter, 8-bit floats with a scale per row as int8's; e4m3 keeps one more mantissa bit, e5m2 more "
       "range). The KV budget counts bytes, so smaller values hold more tokens")
      ->check(CLI::Validator([](std::string& s) { return kv_cache_dtype_error(s); }, "DTYPE"))
      ->default_str("auto")
      ->envname("DPSERVE_KV_CACHE_DTYPE");
  c->add_option_function<std::string>(
       "--mla-attention", [&o](const std::string& s) { o.mla_absorbed_only = s == "absorbed"; },
       "MLA models (DeepSeek-V2/V3): auto (per sequence and step the cheaper of two equal forms: absorbed for "
       "decode and short chunks, decompressed for long prefills; they round differently, so a prompt's "
       "tokens can come out differently when it is prefilled in other pieces: a prefix-cache hit, a "
       "preemption's recompute, another --chunked-prefill-size) or absorbed (every step in the absorbed form: "
       "outputs independent of how prompts are split, as for other models; long prefills cost more attention "
       "work)")
      ->check(CLI::IsMember({"auto", "absorbed"}))
      ->default_str("auto")
      ->envname("DPSERVE_MLA_ATTENTION");
  c->add_option("--kv-cache-dir", o.kv_cache_dir,
                "Keep the prefix cache on disk: each rank writes its cached prefixes' KV pages to DIR/rank<N>.kvcache "
                "(at shutdown, and as prefixes are added: --kv-cache-write-behind-tokens) and reads them back at "
                "start, so a restarted server serves those prefixes without recomputing them. A file made with "
                "another model (or image preprocessing), layout, page size, KV dtype or dpserve version, or a corrupt one, is refused with a "
                "warning. To tell the model's weights apart, every start reads all of them for a digest (about 0.4 s "
                "per GB from the page cache on one core here, the disk's read time when they are not cached). "
                "The files hold every client's prompts: they are created 0600, a missing DIR 0700. One server per "
                "DIR: a second one given a DIR in use stops at start (a lock, DIR/rank<N>.lock). POST /flush_cache "
                "removes the files too. "
                "SGLang's hierarchical cache flags (--enable-hierarchical-cache, --hicache-*) are not implemented")
      ->type_name("DIR")
      ->envname("DPSERVE_KV_CACHE_DIR");
  c->add_option("--kv-cache-dir-max-gb", o.kv_cache_dir_max_gb,
                "Most GB of KV pages one rank's --kv-cache-dir file holds (the most recently used prefixes)")
      ->capture_default_str()
      ->check(CLI::Range(1e-6, 1e6))
      ->needs("--kv-cache-dir")
      ->envname("DPSERVE_KV_CACHE_DIR_MAX_GB");
  c->add_option("--kv-cache-write-behind-tokens", o.kv_cache_write_behind_tokens,
                "--kv-cache-dir: rewrite the file once the prefix cache gained this many tokens (and at least a "
                "quarter of what it holds) since it was last written, so a crash loses only the newest prefixes "
                "(the step loop pauses while it writes); 0 = only at shutdown")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40))
      ->needs("--kv-cache-dir")
      ->envname("DPSERVE_KV_CACHE_WRITE_BEHIND_TOKENS");
}

}  // namespace dpserve::app
