// End-to-end single-rank generation benchmark on a model of realistic shape:
// prefill of a long prompt, single-stream decode, and batched decode, each
// printed next to the roofline measured in the same run (read bandwidth for
// single-stream decode, bf16 peak for prefill and batched decode), plus peak RSS.
//
//   /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --out /tmp/tinyllama
//   build/bin/generate_bench --model-path /tmp/tinyllama [--threads 2]
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>

#include "bench/roofline.h"
#include "engine/offline_runner.h"
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"End-to-end generation benchmark with same-run roofline ratios"};
  std::string model_path;
  int threads = 0;
  int64_t prompt_len = 512, decode = 64, batch = 32;
  app.add_option("--model-path", model_path, "HF model folder (e.g. tools/make_hf_model.py --preset tinyllama-1.1b)")
      ->required();
  app.add_option("--threads", threads, "OpenMP threads (0 = all cores)");
  app.add_option("--prompt-len", prompt_len, "prefill length")->capture_default_str();
  app.add_option("--decode-tokens", decode, "tokens decoded per sequence")->capture_default_str();
  app.add_option("--batch", batch, "sequences in the batched decode")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) omp_set_num_threads(threads);

  const double bw = measure_read_bandwidth();
  const double peak = measure_bf16_peak();
  // Peak RSS from here on: reset the high-water mark left by the bandwidth buffer.
  std::ofstream("/proc/self/clear_refs") << "5";
  LoadOptions lo;
  lo.threads = threads;
  auto model = Model::load(model_path, lo);
  const ModelConfig& c = model->config();
  // Bytes read per decoded token: every matrix once; the embedding only when it is also the LM head.
  const int64_t embed_bytes = c.vocab * c.hidden * int64_t(dtype_size(c.dtype));
  const int64_t stream_bytes = model->weight_bytes() - (c.tie_embeddings ? 0 : embed_bytes);
  const double flops_per_token = double(stream_bytes) / double(dtype_size(c.dtype)) * 2.0;
  std::printf("machine: %d threads, read bandwidth %.1f GB/s, bf16 peak %.1f GFLOP/s\n", omp_get_max_threads(),
              bw / 1e9, peak / 1e9);
  std::printf("model: %s, %lld layers, hidden %lld, %.2f GB weights, %.2f GB read per token\n", c.arch_name.c_str(),
              (long long)c.n_layers, (long long)c.hidden, double(model->weight_bytes()) / 1e9, double(stream_bytes) / 1e9);

  RunnerOptions ro;
  ro.prefill_chunk = 4096;
  OfflineRunner runner(*model, {}, ro);
  auto req = [&](int64_t plen, int64_t n, int32_t salt) {
    SamplingParams sp;
    sp.temperature = 0;
    sp.max_new_tokens = n;
    sp.ignore_eos = true;
    return GenRequest{prompt_of(plen, c.vocab, salt), sp};
  };

  // Warm the weights into the page cache and the caches' first touch.
  runner.run({req(8, 2, 99)});

  runner.run({req(prompt_len, 1, 1)});
  const double prefill_tps = double(prompt_len) / runner.stats().prefill_seconds;
  // Attention flops are small next to the matmuls at this length; count matmuls only.
  const double prefill_frac = peak > 0 ? prefill_tps * flops_per_token / peak : 0;
  std::printf("prefill %lld tokens: %.1f tok/s = %.1f%% of bf16 peak\n", (long long)prompt_len, prefill_tps,
              100 * prefill_frac);

  runner.run({req(16, decode, 2)});
  const double decode_tps = double(decode - 1) / runner.stats().decode_seconds;
  std::printf("decode, 1 sequence: %.2f tok/s = %.1f%% of the bandwidth limit (%.2f tok/s)\n", decode_tps,
              100 * decode_tps * double(stream_bytes) / bw, bw / double(stream_bytes));

  std::vector<GenRequest> reqs;
  for (int64_t i = 0; i < batch; ++i) reqs.push_back(req(16, decode, int32_t(10 + i)));
  runner.run(reqs);
  const double batch_tps = double(batch * (decode - 1)) / runner.stats().decode_seconds;
  std::printf("decode, %lld sequences: %.1f tok/s = %.1f%% of the compute limit (%.1f tok/s)\n", (long long)batch,
              batch_tps, peak > 0 ? 100 * batch_tps * flops_per_token / peak : 0.0,
              peak > 0 ? peak / flops_per_token : 0.0);

  const int64_t kv_bytes = KVPool::bytes_per_page(model->kv_config(1, 16)) / 16 * batch * (16 + decode);
  const int64_t rss = peak_rss_bytes();
  std::printf("peak RSS %.2f GB; bound = weights %.2f GB + KV %.2f GB + 0.30 GB = %.2f GB (%s)\n", double(rss) / 1e9,
              double(model->weight_bytes()) / 1e9, double(kv_bytes) / 1e9,
              double(model->weight_bytes() + kv_bytes) / 1e9 + 0.3,
              double(rss) <= double(model->weight_bytes() + kv_bytes) + 0.3e9 ? "within" : "OVER");
  return 0;
}
