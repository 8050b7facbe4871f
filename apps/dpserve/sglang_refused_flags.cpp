#include "apps/dpserve/sglang_refused_flags.h"

#include <string>

namespace dpserve::app {

namespace {

struct Refused {
  const char* name;
  bool takes_value;  // SGLang's flag takes a value (so `--flag VALUE` is refused as one, not two errors)
  const char* why;
};

// Each reason says what this server does instead, so the user knows what to drop or use.
constexpr Refused kRefused[] = {
    {"--model", true, "use --model-path"},
    {"--dtype", true, "weights keep their stored type (bf16 / f16 / f32 / GGUF); --quantization converts them"},
    {"--device", true, "dpserve runs on CPUs only"},
    {"--tokenizer-mode", true, "there is one tokenizer implementation"},
    {"--load-format", true, "the format is read from the files (safetensors, GGUF, llama2.c)"},
    {"--revision", true, "local folders only; nothing is downloaded"},
    {"--download-dir", true, "local folders only; nothing is downloaded"},
    {"--config", true, "there are no config files; every flag reads DPSERVE_<FLAG> from the environment"},
    {"--pp-size", true, "pipeline parallelism is not implemented (use --tp-size / --dp-size)"},
    {"--enable-ep-moe", false, "use --ep-size"},
    {"--moe-a2a-backend", true, "experts exchange tokens through MPI only"},
    {"--attention-backend", true, "one set of CPU attention kernels, picked from the CPU's features"},
    {"--sampling-backend", true, "there is one sampler"},
    {"--grammar-backend", true, "there is one grammar engine (structured outputs are always on)"},
    {"--enable-torch-compile", false, "there is no PyTorch here"},
    {"--disable-cuda-graph", false, "there is no GPU here"},
    {"--cuda-graph-max-bs", true, "there is no GPU here"},
    {"--base-gpu-id", true, "there is no GPU here"},
    {"--enable-p2p-check", false, "there is no GPU here"},
    {"--cpu-offload-gb", true, "weights already live in host memory (there is no device memory to offload from)"},
    {"--enable-mixed-chunk", false, "prefill chunks and decodes always share a step"},
    {"--schedule-conservativeness", true, "admission is optimistic, with no reserve to tune (docs/scheduler.md)"},
    {"--stream-interval", true, "every token is streamed as it comes"},
    {"--max-loras-per-batch", true, "every --lora-paths adapter stays loaded and any mix of them shares a batch"},
    {"--lora-backend", true, "there is one LoRA implementation"},
    {"--enable-hierarchical-cache", false, "no hierarchical cache; --kv-cache-dir keeps prefixes on disk"},
    {"--hicache-ratio", true, "no hierarchical cache; --kv-cache-dir keeps prefixes on disk"},
    {"--disaggregation-mode", true, "prefill / decode disaggregation is not implemented"},
    {"--json-model-override-args", true, "the model's config.json is read as it is"},
    {"--enable-multimodal", false, "image inputs are on for models with a vision tower"},
    {"--allow-auto-truncate", false,
     "a prompt beyond the context is a 400, never truncated unless the request asks (vLLM's truncate_prompt_tokens)"},
    {"--enable-cache-report", false, "usage.prompt_tokens_details.cached_tokens is always reported"},
    {"--tool-server", true, "there are no built-in tools (function tools run in the client)"},
    {"--show-time-cost", false, "/metrics and the request log carry the timings"},
};

}  // namespace

void add_sglang_refused_flags(CLI::App* serve) {
  for (const Refused& r : kRefused) {
    const std::string name = r.name;
    const std::string why = std::string("SGLang's flag is not supported here: ") + r.why;
    if (r.takes_value) {
      serve->add_option_function<std::string>(
               name, [name, why](const std::string&) { throw CLI::ValidationError(name, why); })
          ->expected(0, 1)  // `--dtype` alone gets the same answer, not a "value missing" one
          ->group("");
    } else {
      serve->add_flag_callback(name, [name, why] { throw CLI::ValidationError(name, why); })->group("");
    }
  }
}

}  // namespace dpserve::app
