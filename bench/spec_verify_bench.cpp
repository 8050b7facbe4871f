// Cost of verifying drafted tokens: one forward pass of a single sequence with k + 1 new rows (its
// last token and k drafts, logits for each) against the 1-row pass of a plain decode step, at the
// same context, on a model of realistic shape. Speculative decoding pays when a step that checks
// k drafts costs little more than a step that makes one token: on a CPU at the memory wall the
// weights are read once either way.
//
//   /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --out /tmp/tinyllama
//   build/bin/spec_verify_bench --model-path /tmp/tinyllama [--context 256] [--max-k 8] [--reps 9]
//
// Rows are timed alternately (1, k+1, 1, k+1, ...) so drift of the shared machine falls on both;
// the printed ratio is median(k+1 rows) / median(1 row).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/check.h"
#include "kv/kv_pool.h"
#include "model/model.h"
#include "model/quant_recipe.h"

using namespace dpserve;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Verification cost of k drafted tokens against a 1-token decode step"};
  std::string model_path;
  int threads = 0;
  int64_t context = 256, max_k = 8, reps = 9;
  std::string quant = "none";
  app.add_option("--model-path", model_path, "HF model folder or GGUF file")->required();
  app.add_option("--threads", threads, "threads of the model's team (0 = all cores)");
  app.add_option("--context", context, "tokens already in the KV cache")->capture_default_str();
  app.add_option("--max-k", max_k, "largest draft length")->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--reps", reps, "timed passes of each size")->capture_default_str()->check(CLI::Range(3, 1000));
  app.add_option("--quantization", quant, "quantize float weights on load, as dpserve --quantization")
      ->capture_default_str()
      ->check([](const std::string& s) { return quantization_from_name(s) ? "" : "unknown method " + s; });
  CLI11_PARSE(app, argc, argv);

  LoadOptions lo;
  lo.threads = threads;
  lo.quantization = *quantization_from_name(quant);
  auto model = Model::load(model_path, lo);
  const ModelConfig& c = model->config();
  const int64_t page = 16, positions = context + max_k + 1;
  KVPool kv(model->kv_config((positions + page - 1) / page, page));
  std::vector<int32_t> pages(size_t((positions + page - 1) / page));
  for (size_t i = 0; i < pages.size(); ++i) pages[i] = int32_t(i);
  std::vector<int32_t> toks(static_cast<size_t>(positions));
  uint32_t x = 12345;
  for (auto& t : toks) {
    x = x * 1664525u + 1013904223u;
    t = int32_t(3 + x % uint32_t(c.vocab - 3));
  }
  std::vector<float> logits(size_t((max_k + 1) * c.vocab));
  // The context, once: then every timed pass writes positions [context, context + rows).
  {
    ForwardBatch b;
    b.add(toks.data(), context, 0, pages.data(), false);
    std::vector<float> last(size_t(c.vocab));
    model->forward(b, kv, last.data());
  }
  auto pass = [&](int64_t rows) {
    ForwardBatch b;
    b.add(toks.data() + context, rows, context, pages.data(), true);  // logits of every row, as a verify needs
    const double t0 = now_s();
    model->forward(b, kv, logits.data());
    return now_s() - t0;
  };
  for (int w = 0; w < 2; ++w) pass(1), pass(max_k + 1);  // weights into the page cache, buffers sized
  std::printf("model: %s, %lld layers, hidden %lld, %.2f GB weights; context %lld; %d threads\n", c.arch_name.c_str(),
              (long long)c.n_layers, (long long)c.hidden, double(model->weight_bytes()) / 1e9, (long long)context,
              model->threads());
  std::printf("%4s %12s %12s %8s\n", "k", "1 row ms", "k+1 rows ms", "ratio");
  for (int64_t k = 1; k <= max_k; ++k) {
    std::vector<double> one, many;
    for (int64_t r = 0; r < reps; ++r) {
      one.push_back(pass(1));
      many.push_back(pass(k + 1));
    }
    const double a = median(one), b = median(many);
    std::printf("%4lld %12.2f %12.2f %8.3f\n", (long long)k, a * 1e3, b * 1e3, b / a);
  }
  return 0;
}
