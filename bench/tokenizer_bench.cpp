// Tokenizer load time, and speed on a 32 KB prompt (the target: well under 10 ms), with tokens/s, for the
// byte-level BPE vocabularies; then the same text through the npm @huggingface/tokenizers for comparison.
// usage: tokenizer_bench [--benchmark_*]   (DPSERVE_SHARED_DIR locates the tokenizers)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include <benchmark/benchmark.h>

#include "core/shared_dir.h"
#include "tokenizer/tokenizer.h"

namespace {

// A realistic mixed prompt: English prose, code with indentation, numbers, CJK and emoji.
std::string make_prompt(size_t bytes, uint32_t seed, bool novel_words) {
  static const char* frags[] = {
      "The quick brown fox jumps over the lazy dog. ", "It's a truth universally acknowledged that ",
      "def handler(request):\n    if request.method == 'POST':\n        return process(request.body)\n",
      "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n", "Revenue grew 12.5% to $3,141,592 in 2024. ",
      "数据并行注意力将请求分配到多个进程。", "これはテストです。", "Привет, как дела? ", "🙂👍🏽 ", "\n\n",
      "<|im_start|>user\n", "Please summarize the following document in three bullet points: "};
  std::mt19937 rng(seed);
  std::string s;
  static const char* syl[] = {"ka", "ri", "to", "men", "sul", "vo", "zek", "pra", "ul", "dro", "ith", "qua"};
  while (s.size() < bytes) {
    if (novel_words && rng() % 2) {
      s += ' ';
      for (int k = 0, n = 2 + rng() % 4; k < n; ++k) s += syl[rng() % 12];
    } else {
      s += frags[rng() % (sizeof(frags) / sizeof(frags[0]))];
    }
  }
  s.resize(bytes);
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();  // whole chars
  if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
  return s;
}

const dpserve::Tokenizer& tokenizer(const std::string& name) {
  static std::unique_ptr<dpserve::Tokenizer> qwen, llama;
  auto& t = name == "qwen3" ? qwen : llama;
  if (!t) t = dpserve::Tokenizer::load(dpserve::shared_dir() + "/tokenizers/" + name);
  return *t;
}

void encode_bench(benchmark::State& state, const std::string& name, bool novel) {
  const auto& tok = tokenizer(name);
  uint32_t seed = 1;
  std::string text = make_prompt(32 * 1024, seed, novel);
  int64_t tokens = 0;
  for (auto _ : state) {
    if (novel) {  // a fresh prompt each time: most words miss the word cache
      state.PauseTiming();
      text = make_prompt(32 * 1024, ++seed, true);
      state.ResumeTiming();
    }
    auto ids = tok.encode(text, false);
    tokens += static_cast<int64_t>(ids.size());
    benchmark::DoNotOptimize(ids.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["tokens/prompt"] = static_cast<double>(tokens) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
}

void decode_bench(benchmark::State& state, const std::string& name) {
  const auto& tok = tokenizer(name);
  const auto ids = tok.encode(make_prompt(32 * 1024, 1, false), false);
  for (auto _ : state) {
    dpserve::IncrementalDecoder dec(tok, true);
    size_t n = 0;
    for (int32_t id : ids) n += dec.push(id).size();
    benchmark::DoNotOptimize(n);
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(ids.size() * state.iterations()), benchmark::Counter::kIsRate);
}

// Loading the tokenizer folder, as every server and `dpserve tokenize` start does.
void load_bench(benchmark::State& state, const std::string& name) {
  const std::string dir = dpserve::shared_dir() + "/tokenizers/" + name;
  for (auto _ : state) {
    auto t = dpserve::Tokenizer::load(dir);
    benchmark::DoNotOptimize(t.get());
  }
}

BENCHMARK_CAPTURE(load_bench, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(load_bench, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_bench, qwen3_32KB, std::string("qwen3"), false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_bench, qwen3_32KB_novel_words, std::string("qwen3"), true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_bench, llama3_32KB, std::string("llama3"), false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_bench, llama3_32KB_novel_words, std::string("llama3"), true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(decode_bench, qwen3_stream_32KB, std::string("qwen3"))->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // The same 32 KB prompt through the pure-JS @huggingface/tokenizers, measured in the same run.
  const std::string path = "/tmp/dpserve_tokenizer_bench_prompt.txt";
  std::ofstream(path, std::ios::binary) << make_prompt(32 * 1024, 1, false);
  const std::string cmd = std::string("node ") + DPSERVE_SOURCE_DIR "/bench/tokenizer_npm_bench.mjs " +
                          DPSERVE_SOURCE_DIR "/tests/node " + dpserve::shared_dir() + " " + path;
  std::printf("\nnpm @huggingface/tokenizers on the same prompt:\n");
  std::fflush(stdout);
  if (std::system(cmd.c_str()) != 0) std::printf("(npm comparison unavailable: run scripts/install-deps.sh)\n");
  return 0;
}
