// End-to-end single-rank generation benchmark on a model of realistic shape, through the engine's
// scheduler and step as `dpserve generate` runs them: prefill of a long prompt, single-stream
// decode, and batched decode, each printed next to the roofline measured in the same run (read
// bandwidth for single-stream decode, bf16 peak for prefill and batched decode -- the fp32 FMA
// peak on a CPU without AVX-512 BF16, the int8 vpdpbusd peak with --quantization), plus peak RSS.
// Single-stream decode is also split by phase (model/step_phases.h): how fast the weight products
// streamed their matrices, and how much of the time went to everything around them; so is the
// timed prefill (what share attention takes of a long prompt, and at what rate).
//
//   /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --out /tmp/tinyllama
//   build/bin/generate_bench --model-path /tmp/tinyllama [--threads 2] [--quantization q4_k_m]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/roofline.h"
#include "core/check.h"
#include "engine/runtime.h"
#include "kernels/isa.h"
#include "kernels/matmul.h"
#include "kernels/qmatmul.h"
#include "kv/kv_dtype.h"
#include "model/model.h"

using namespace dpserve;

namespace {

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmHWM:") {
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    std::getline(in, key);
  }
  return 0;
}

std::vector<int32_t> prompt_of(int64_t n, int64_t vocab, int32_t salt) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  uint32_t x = 2166136261u ^ uint32_t(salt);
  for (auto& t : p) {
    x = x * 1664525u + 1013904223u;
    t = int32_t(3 + x % uint32_t(vocab - 3));
  }
  return p;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Run {
  double prefill_seconds = 0;  // submit -> every request's first token
  double decode_seconds = 0;   // from there -> the last token
};

// Greedy requests (EOS ignored) through the engine's scheduler and step, stamped as they are delivered.
Run run(DpEngine& engine, const std::vector<std::vector<int32_t>>& prompts, int64_t new_tokens) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  const double t0 = now_s();
  for (const auto& p : prompts) {
    Request r;
    r.input_ids = p;
    r.params.temperature = 0;
    r.params.max_new_tokens = new_tokens;
    r.params.ignore_eos = true;
    streams.push_back(engine.enqueue(std::move(r)));
  }
  // One reader per request, so each token is stamped when it is delivered.
  std::vector<double> first(streams.size(), 0), last(streams.size(), 0);
  std::vector<std::string> errors(streams.size());
  std::vector<std::thread> readers;
  for (size_t i = 0; i < streams.size(); ++i)
    readers.emplace_back([&, i] {
      Response resp;
      while (true) {
        if (!streams[i]->next(resp, std::chrono::milliseconds(1000))) continue;
        if (!resp.tokens.empty()) {
          last[i] = now_s();
          if (first[i] == 0) first[i] = last[i];
        }
        if (resp.finished) {
          // Every run decodes to its length; any other end (an error, a stop token) spoils the timing.
          if (resp.finish_reason != "length")
            errors[i] = resp.error.empty() ? "finish reason " + resp.finish_reason : resp.error;
          return;
        }
      }
    });
  for (auto& t : readers) t.join();
  double first_all = t0, last_all = t0;
  for (size_t i = 0; i < streams.size(); ++i) {
    if (!errors[i].empty()) fail("a request did not run to its length: {}", errors[i]);
    first_all = std::max(first_all, first[i]);
    last_all = std::max(last_all, last[i]);
  }
  return Run{first_all - t0, last_all - first_all};
}

// Decode by phase: time a step (a token of each sequence), share, and for the weight products the
// rate they streamed their matrices at, against the same run's read bandwidth. The products' rate
// apart from the rest shows whether a gap to the bandwidth limit is in the streams or around them.
void print_phases(const StepPhaseClock& ph, const Model& model, const ReadBandwidth& bws) {
  if (ph.steps() == 0) return;
  const double total = ph.total_seconds(), steps = double(ph.steps());
  std::printf("  by phase (%lld steps; us a step, share, weight stream rate):\n", (long long)ph.steps());
  double product_s = 0, product_bytes = 0;
  for (int i = 0; i < StepPhaseClock::kPhases; ++i) {
    const auto p = StepPhase(i);
    if (ph.marks(p) == 0) continue;
    const double s = ph.seconds(p);
    const int64_t bytes = model.phase_weight_bytes(p);
    std::printf("    %-10s %9.1f us %5.1f%%", step_phase_name(p), 1e6 * s / steps, 100 * s / total);
    if (bytes > 0 && s > 0) {
      const double rate = double(bytes) * steps / s;
      std::printf("  %6.1f GB/s = %5.1f%% of the best slice, %5.1f%% of sustained", rate / 1e9, 100 * rate / bws.best,
                  bws.sustained > 0 ? 100 * rate / bws.sustained : 0.0);
      product_s += s;
      product_bytes += double(bytes) * steps;
    }
    std::printf("\n");
  }
  if (product_s > 0)
    std::printf("    products together: %.1f GB/s = %.1f%% of the best slice, %.1f%% of sustained; %.1f%% of the time\n",
                product_bytes / product_s / 1e9, 100 * product_bytes / product_s / bws.best,
                bws.sustained > 0 ? 100 * product_bytes / product_s / bws.sustained : 0.0, 100 * product_s / total);
}

// Prefill by phase: the timed prompt's time in each, and its share. Long prompts move time from
// the weight products to attention (quadratic in the length); for plain causal attention (no
// MLA, no window) its multiply-adds over the triangle of positions are given as a rate, against
// the products' roof where that is the bf16 one (a quantized model's is int8).
void print_prefill_phases(const StepPhaseClock& ph, const ModelConfig& c, int64_t len, double bf16_peak) {
  if (ph.steps() == 0) return;
  const double total = ph.total_seconds();
  std::printf("  prefill by phase (%lld steps; ms the prompt, share):\n", (long long)ph.steps());
  for (int i = 0; i < StepPhaseClock::kPhases; ++i) {
    const auto p = StepPhase(i);
    if (ph.marks(p) == 0) continue;
    const double s = ph.seconds(p);
    std::printf("    %-10s %9.1f ms %5.1f%%", step_phase_name(p), 1e3 * s, 100 * s / total);
    if (p == StepPhase::kAttention && !c.mla.enabled() && c.sliding_window == 0 && s > 0) {
      const double flops = 4.0 * double(c.n_layers * c.n_heads * c.head_dim) * double(len) * double(len + 1) / 2;
      std::printf("  %7.1f GFLOP/s", flops / s / 1e9);
      if (bf16_peak > 0) std::printf(" = %5.1f%% of bf16 peak", 100 * flops / s / bf16_peak);
    }
    std::printf("\n");
  }
}

}  // namespace

int bench_main(int argc, char** argv) {
  CLI::App app{"End-to-end generation benchmark with same-run roofline ratios"};
  std::string model_path;
  int threads = 0;
  int64_t prompt_len = 512, decode = 64, batch = 32;
  app.add_option("--model-path", model_path, "HF model folder (e.g. tools/make_hf_model.py --preset tinyllama-1.1b) or GGUF file")
      ->required();
  app.add_option("--threads", threads, "OpenMP threads (0 = all cores)")->check(CLI::Range(0, 4096));
  app.add_option("--prompt-len", prompt_len, "prefill length")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--decode-tokens", decode, "tokens decoded per sequence")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--batch", batch, "sequences in the batched decode")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  std::string quant = "none";
  app.add_option("--quantization", quant, "quantize the float weights on load, as dpserve --quantization")
      ->capture_default_str()
      ->check([](const std::string& s) { return quantization_from_name(s) ? "" : "unknown method " + s; });
  int64_t prefetch = -1;
  app.add_option("--weight-prefetch", prefetch,
                 "bytes the products prefetch ahead of their weight streams (bf16 and quantized; 0: the hardware "
                 "prefetchers alone; default: the CPU's, kernels/matmul.h and kernels/qmatmul.h), for A/B runs")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  int64_t prefetch_near = -1;
  app.add_option("--weight-prefetch-near", prefetch_near,
                 "bytes ahead of the quantized weight streams a second prefetch brings lines into L1, where the far "
                 "one goes into L2 (0: none; default: the CPU's, kernels/qmatmul.h), for A/B runs")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  std::string bf16_products = "default";
  app.add_option("--bf16-products", bf16_products,
                 "how bf16 weights and attention multiply at the AVX-512 BF16 level, for A/B runs: fma (widened "
                 "to fp32 FMAs), dot (vdpbf16ps) or default (DPSERVE_BF16_PRODUCTS, else the CPU's choice: "
                 "kernels/isa.h)")
      ->capture_default_str()
      ->check(CLI::IsMember({"default", "fma", "dot"}));
  std::string kv_dtype = "auto";
  app.add_option("--kv-cache-dtype", kv_dtype, "how the KV cache stores K and V, as dpserve --kv-cache-dtype")
      ->capture_default_str()
      ->check(CLI::Validator([](std::string& s) { return kv_cache_dtype_error(s); }, "DTYPE"));
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) omp_set_num_threads(threads);
  if (bf16_products != "default") kernels::set_bf16_fma_products(bf16_products == "fma");
  if (prefetch_near >= 0) kernels::set_quant_weight_prefetch_near(prefetch_near);
  if (prefetch >= 0) {
    kernels::set_bf16_weight_prefetch(prefetch);
    kernels::set_quant_weight_prefetch(prefetch, kernels::default_quant_weight_prefetch_l2());
  }
  const Quantization q = *quantization_from_name(quant);
  const ReadBandwidth bws = measure_read_bandwidths();
  const double bw = bws.best;
  // Peak RSS from here on: reset the high-water mark left by the bandwidth buffer.
  std::ofstream("/proc/self/clear_refs") << "5";
  // The engine as `dpserve generate` runs it, one rank: a whole prompt per step, room for the batch.
  RuntimeOptions ro;
  ro.model_path = model_path;
  ro.quantization = q;
  ro.kv_cache_dtype = *kv_cache_dtype_from_name(kv_dtype);
  ro.threads = threads;
  ro.sched.chunked_prefill_size = 4096;
  ro.sched.max_prefill_tokens = 4096;
  ro.sched.max_running_requests = std::max<int64_t>(batch, 1);
  ro.max_total_tokens = std::max(prompt_len + 16, batch * (16 + decode)) + 64;
  auto rt = Runtime::start(ro);
  // Where single-stream decode's time goes: reset just before that run, read just after it.
  StepPhaseClock phases(1);
  rt->model().set_phase_clock(&phases);
  const Model& model = rt->model();
  const ModelConfig& c = model.config();
  // Quantized weights (--quantization, or a GGUF file's block types) run on the int8 kernels.
  const bool int8 = model.quantized();
  const char* float_roof = "bf16";
  // bf16 products on FMAs: where the AVX-512 BF16 level takes them, or where there is no such level.
  const bool fma = kernels::bf16_fma_products() || !kernel_isa_supported(KernelIsa::Avx512Bf16);
  const double peak = int8 ? measure_int8_peak() : measure_bf16_product_peak(&float_roof, fma);
  const char* roof = int8 ? "int8" : float_roof;
  // Bytes read per decoded token: every matrix once, a MoE layer's experts in the share a token
  // picks; the embedding table (in whatever type the file stores it) only when it is also the LM head.
  const int64_t stream_bytes = model.token_weight_bytes();
  const double flops_per_token = 2.0 * double(model.token_weight_params());
  std::printf("machine: %d threads, read bandwidth %.1f GB/s (sustained %.1f), %s peak %.1f G%s/s\n",
              omp_get_max_threads(), bw / 1e9, bws.sustained / 1e9, roof, peak / 1e9, int8 ? "OP" : "FLOP");
  std::printf("weight prefetch: bf16 %lld bytes ahead, quantized %lld bytes ahead into %s", (long long)kernels::bf16_weight_prefetch(),
              (long long)kernels::quant_weight_prefetch(), kernels::quant_weight_prefetch_l2() ? "L2" : "L1");
  if (kernels::quant_weight_prefetch_l2() && kernels::quant_weight_prefetch_near() > 0)
    std::printf(" and %lld bytes ahead into L1", (long long)kernels::quant_weight_prefetch_near());
  std::printf("\n");
  std::printf("bf16 products: %s\n", kernels::bf16_fma_products() ? "fp32 FMAs (bf16 widened)" : "vdpbf16ps");
  std::printf("model: %s, %lld layers, hidden %lld, %.2f GB weights, %.2f GB read per token\n", c.arch_name.c_str(),
              (long long)c.n_layers, (long long)c.hidden, double(model.weight_bytes()) / 1e9, double(stream_bytes) / 1e9);

  rt->run_with_client([&](DpEngine& engine) {
    // Warm the weights into the page cache and the caches' first touch.
    run(engine, {prompt_of(8, c.vocab, 99)}, 2);

    // A first prompt of the measured length, as llama-bench runs one before it times pp N: it grows
    // the step's buffers to that length and first-touches them (a one-time cost a server pays on its
    // first long prompt; on a MoE model, whose experts' buffers grow with the routed rows, it was
    // half the first prompt's time). Printed on its own; the timed prompt is the next one.
    const Run first = run(engine, {prompt_of(prompt_len, c.vocab, 1)}, 1);
    StepPhaseClock prefill_phases(prompt_len + 1);
    rt->model().set_phase_clock(&prefill_phases);
    const Run pre = run(engine, {prompt_of(prompt_len, c.vocab, 2)}, 1);
    rt->model().set_phase_clock(&phases);
    const double prefill_tps = double(prompt_len) / pre.prefill_seconds;
    // Attention flops are small next to the matmuls at this length; count matmuls only.
    const double prefill_frac = peak > 0 ? prefill_tps * flops_per_token / peak : 0;
    std::printf("prefill %lld tokens: %.1f tok/s = %.1f%% of %s peak (the first prompt of this length: %.1f tok/s)\n",
                (long long)prompt_len, prefill_tps, 100 * prefill_frac, roof,
                double(prompt_len) / first.prefill_seconds);
    print_prefill_phases(prefill_phases, c, prompt_len, int8 ? 0.0 : peak);

    phases.reset();
    const Run one = run(engine, {prompt_of(16, c.vocab, 2)}, decode);
    const StepPhaseClock decode_phases = phases;
    const double decode_tps = double(decode - 1) / one.decode_seconds;
    // Against the best slice of the bandwidth measure (the strict limit) and against all of it (a
    // read as long and as interrupted as the decode).
    std::printf("decode, 1 sequence: %.2f tok/s = %.1f%% of the bandwidth limit (%.2f tok/s; %.1f%% of a sustained read's)\n",
                decode_tps, 100 * decode_tps * double(stream_bytes) / bw, bw / double(stream_bytes),
                bws.sustained > 0 ? 100 * decode_tps * double(stream_bytes) / bws.sustained : 0.0);
    print_phases(decode_phases, model, bws);

    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = 0; i < batch; ++i) prompts.push_back(prompt_of(16, c.vocab, int32_t(10 + i)));
    StepPhaseClock batch_phases(batch);  // the decode steps (a step of the prompts has more tokens)
    rt->model().set_phase_clock(&batch_phases);
    const Run many = run(engine, prompts, decode);
    rt->model().set_phase_clock(nullptr);
    const double batch_tps = double(batch * (decode - 1)) / many.decode_seconds;
    std::printf("decode, %lld sequence%s: %.1f tok/s = %.1f%% of the compute limit (%.1f tok/s)\n", (long long)batch,
                batch == 1 ? "" : "s",
                batch_tps, peak > 0 ? 100 * batch_tps * flops_per_token / peak : 0.0,
                peak > 0 ? peak / flops_per_token : 0.0);
    print_phases(batch_phases, model, bws);
  });

  const int64_t kv_bytes = model.kv_config(1, 16).bytes_per_token() * rt->kv_tokens_per_rank();
  const int64_t rss = peak_rss_bytes();
  std::printf("peak RSS %.2f GB; bound = weights %.2f GB + KV %.2f GB + 0.30 GB = %.2f GB (%s)\n", double(rss) / 1e9,
              double(model.weight_bytes()) / 1e9, double(kv_bytes) / 1e9,
              double(model.weight_bytes() + kv_bytes) / 1e9 + 0.3,
              double(rss) <= double(model.weight_bytes() + kv_bytes) + 0.3e9 ? "within" : "OVER");
  return 0;
}

int main(int argc, char** argv) {
  // A bad run (a prompt longer than the model's context, a model that does not load) is a message
  // and exit status 1, not an abort with a backtrace.
  try {
    return bench_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate_bench: error: %s\n", e.what());
    return 1;
  }
}
