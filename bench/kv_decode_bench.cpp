// Decode at long context per KV cache dtype (--kv-cache-dtype fp32 / bf16 / int8 / fp8), one model, same
// run: each context's K/V is written straight into the pool (random rows: attention's cost does
// not depend on the values, and a 32k-token prefill would take an hour on two cores), then
// decode steps of `--batch` sequences run through Model::forward, the dtypes taking turns, and the
// fastest round's time per step is printed with its ratio to fp32's.
//
//   /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --max-position-embeddings 40960 --out /tmp/tl
//   build/bin/kv_decode_bench --model-path /tmp/tl --contexts 1024,8192,32768 [--batch 1] [--threads 2]
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/check.h"
#include "kv/kv_pool.h"
#include "model/model.h"

using namespace dpserve;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

KVElem elem_of(const std::string& s) {
  if (s == "fp32") return KVElem::kF32;
  if (s == "bf16") return KVElem::kBF16;
  if (s == "int8") return KVElem::kInt8;
  if (s == "fp8_e4m3") return KVElem::kFp8E4M3;
  if (s == "fp8_e5m2") return KVElem::kFp8E5M2;
  fail("--dtypes: unknown '{}' (fp32, bf16, int8, fp8_e4m3, fp8_e5m2)", s);
}

// One dtype's pool holding `batch` sequences of `ctx` positions each (random rows), with room
// for `extra` more.
struct Point {
  std::unique_ptr<KVPool> pool;
  std::vector<PageTable> seqs;
  double best = 1e30;  // fastest round's seconds per step
};

Point fill(Model& m, int64_t ctx, int64_t batch, int64_t extra, int64_t page_size) {
  Point pt;
  const int64_t per_seq = (ctx + extra + page_size) / page_size;
  pt.pool = std::make_unique<KVPool>(m.kv_config(per_seq * batch, page_size));
  KVPool& pool = *pt.pool;
  const KVPoolConfig& c = pool.config();
  pt.seqs.resize(static_cast<size_t>(batch));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t row = c.kind == KVKind::kLatent ? c.latent_dim + c.rope_dim : c.head_dim;
  std::vector<float> buf(static_cast<size_t>(row * 64));
  for (float& x : buf) x = nd(rng);
  for (PageTable& t : pt.seqs) {
    if (!t.reserve(pool, ctx + extra)) fail("pool too small");
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (int64_t p = 0; p < ctx; ++p) {
        const int32_t page = t.pages[size_t(p / page_size)];
        const float* r = &buf[size_t(((p * 7 + l) % 64) * row)];
        if (c.kind == KVKind::kLatent) {
          pool.write_latent(l, page, p % page_size, r);
          continue;
        }
        for (int64_t h = 0; h < c.n_kv_heads; ++h) {
          pool.write_k(l, page, h, p % page_size, r);
          pool.write_v(l, page, h, p % page_size, &buf[size_t(((p * 7 + l + h + 1) % 64) * row)]);
        }
      }
    t.len = ctx;
  }
  return pt;
}

// Seconds per decode step over `steps` steps of every sequence of the point.
double decode_steps(Model& m, Point& pt, int64_t steps) {
  const int64_t batch = int64_t(pt.seqs.size());
  std::vector<float> logits(size_t(batch * m.config().vocab));
  std::vector<int32_t> tok(static_cast<size_t>(batch));
  double total = 0;
  for (int64_t st = 0; st < steps; ++st) {
    ForwardBatch b;
    for (int64_t s = 0; s < batch; ++s) {
      PageTable& t = pt.seqs[size_t(s)];
      tok[size_t(s)] = int32_t(3 + (t.len + s) % (m.config().vocab - 3));
      b.add(&tok[size_t(s)], 1, t.len, t.pages.data(), true);
    }
    const double t0 = now_s();
    m.forward(b, *pt.pool, logits.data());
    total += now_s() - t0;
    for (auto& t : pt.seqs) ++t.len;
  }
  return total / double(steps);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"decode step time at long context per KV cache dtype"};
  std::string model_path, contexts = "1024,8192", dtypes = "fp32,bf16,int8";
  int threads = 0;
  int64_t batch = 1, steps = 4, rounds = 3, page_size = 16;
  app.add_option("--model-path", model_path)->required();
  app.add_option("--contexts", contexts, "comma-separated context lengths")->capture_default_str();
  app.add_option("--dtypes", dtypes, "comma-separated KV dtypes (fp32 first: the ratios' base)")->capture_default_str();
  app.add_option("--threads", threads)->check(CLI::Range(0, 4096));
  app.add_option("--batch", batch, "sequences decoding together")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  app.add_option("--steps", steps, "decode steps per round")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--rounds", rounds, "rounds per dtype (the fastest is kept)")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--page-size", page_size)->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(4096)));
  CLI11_PARSE(app, argc, argv);
  try {
    LoadOptions lo;
    lo.threads = threads;
    auto model = Model::load(model_path, lo);
    std::vector<std::string> ds;
    for (size_t a = 0, b; a < dtypes.size(); a = b + 1) {
      b = dtypes.find(',', a);
      if (b == std::string::npos) b = dtypes.size();
      ds.push_back(dtypes.substr(a, b - a));
    }
    std::printf("model %s, %d threads, batch %lld, fastest of %lld rounds of %lld steps\n", model_path.c_str(),
                model->threads(), (long long)batch, (long long)rounds, (long long)steps);
    std::printf("%8s %6s %12s %10s %10s %8s\n", "context", "kv", "KiB/token", "ms/step", "tok/s", "vs fp32");
    for (size_t a = 0, b; a < contexts.size(); a = b + 1) {
      b = contexts.find(',', a);
      if (b == std::string::npos) b = contexts.size();
      const int64_t ctx = std::stoll(contexts.substr(a, b - a));
      if (ctx < 1) {
        std::fprintf(stderr, "--contexts: %lld is not a context length (>= 1)\n", (long long)ctx);
        return 2;
      }
      // Every dtype's pool is filled first, then the dtypes take turns (`--rounds` rounds of
      // `--steps` steps each) and each keeps its fastest round: other work on the machine slows
      // rounds, not dtypes.
      std::vector<Point> pts;
      for (const std::string& d : ds) {
        model->set_kv_elem(elem_of(d));
        pts.push_back(fill(*model, ctx, batch, steps * (rounds + 1), page_size));
        decode_steps(*model, pts.back(), steps);  // warm-up
      }
      for (int64_t r = 0; r < rounds; ++r)
        for (Point& pt : pts) pt.best = std::min(pt.best, decode_steps(*model, pt, steps));
      for (size_t i = 0; i < ds.size(); ++i) {
        const double sec = pts[i].best;
        std::printf("%8lld %6s %12.2f %10.2f %10.2f %7.2fx\n", (long long)ctx, ds[i].c_str(),
                    double(pts[i].pool->config().bytes_per_token()) / 1024.0, sec * 1e3, double(batch) / sec,
                    pts[0].best / sec);
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_decode_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
