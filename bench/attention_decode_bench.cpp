// Single-sequence attention at long context: one query row (decode, n_q = 1) or the last
// --queries rows of a prefill chunk against a paged KV cache of `ctx` positions, paged_attention
// on a team of --threads members, for 1-KV-head and 4-KV-head shapes (and MLA's absorbed latent
// shape). Printed per call: wall time, and CPU time
// summed over the members and of the busiest member (the critical path on a quiet machine:
// what a shared host's other work cannot inflate). Each point runs --reps calls per round and
// keeps its fastest round; the points take turns round by round, so other work on the host
// slows rounds, not points. Build this file at two commits and alternate the two binaries to
// get before/after ratios (docs/benchmarks.md has the command).
//
//   build/bin/attention_decode_bench --contexts 1024,8192,32768 --threads 2 --kv fp32,bf16,int8
//   build/bin/attention_decode_bench --queries 512 --contexts 8192 --shapes llama-32q-4kv-64   (prefill)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/bf16.h"
#include "kernels/attention.h"
#include "kernels/team.h"

using namespace dpserve;

namespace {

// CPU time of the calling thread: on a shared host a member waiting for a core is not charged,
// so the busiest member's CPU time is the step's critical path as a quiet machine would see it
// (members park at barriers when the host is oversubscribed, so waiting costs little CPU).
double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Shape {
  const char* name;
  int64_t heads, kv_heads, head_dim, v_dim;  // v_dim 0: head_dim
  bool latent;                               // MLA: V is the key row's prefix
};

// GQA of eight query heads a KV head (32 q / 4 kv heads of 128, and TinyLlama's 4 of 64), of four
// (Llama-3-8B, Mistral-7B, Qwen3-8B: 32 q / 8 kv heads of 128), of two (Qwen3-1.7B: 16 q / 8 kv
// heads of 128), an MQA shape (32 q heads, 1 KV head of 128), an MHA one (Llama-2-7B: a KV head
// for every query head) and DeepSeek-V2-Lite's absorbed MLA decode (16 heads against one latent
// head of 512 + 64, value = the first 512).
const Shape kShapes[] = {
    {"gqa-32q-4kv-128", 32, 4, 128, 0, false},
    {"llama-32q-4kv-64", 32, 4, 64, 0, false},  // TinyLlama-1.1B
    {"gqa-32q-8kv-128", 32, 8, 128, 0, false},  // Llama-3-8B
    {"gqa-16q-8kv-128", 16, 8, 128, 0, false},  // Qwen3-1.7B
    {"mqa-32q-1kv-128", 32, 1, 128, 0, false},
    {"mha-32q-32kv-128", 32, 32, 128, 0, false},
    {"mla-16q-latent-576", 16, 1, 576, 512, true},
};

KVElem elem_of(const std::string& s) {
  if (s == "fp32") return KVElem::kF32;
  if (s == "bf16") return KVElem::kBF16;
  if (s == "int8") return KVElem::kInt8;
  std::fprintf(stderr, "--kv: unknown '%s' (fp32, bf16, int8)\n", s.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  for (size_t a = 0, b; a < s.size(); a = b + 1) {
    b = s.find(',', a);
    if (b == std::string::npos) b = s.size();
    out.push_back(s.substr(a, b - a));
  }
  return out;
}

// One point: a shape, a context, a KV element type, with its cache, query and output.
struct Point {
  const Shape* shape;
  int64_t ctx;
  int64_t n_q;  // query rows: the last n_q positions of the context
  KVElem elem;
  std::vector<uint8_t> k, v;
  std::vector<float> ks, vs, q, out;
  std::vector<int32_t> pages;
  KVLayerView view;
  AttnParams p;
  AttnSeq seq;
  double best = 1e30;       // wall seconds per call, fastest round
  double cpu_sum = 1e30;    // CPU seconds per call over all members, least round
  double cpu_max = 1e30;    // CPU seconds per call of the busiest member, least round
};

void make(Point& pt, int64_t page_size) {
  const Shape& s = *pt.shape;
  const int64_t vd = s.v_dim ? s.v_dim : s.head_dim;
  const int64_t n_pages = (pt.ctx + page_size - 1) / page_size;
  const int64_t rows = n_pages * s.kv_heads * page_size, es = kv_elem_bytes(pt.elem);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto fill = [&](std::vector<uint8_t>& buf, std::vector<float>& sc, int64_t w) {
    buf.resize(size_t(rows * w * es));
    sc.assign(size_t(rows), 0.02f);
    for (int64_t i = 0; i < rows * w; ++i) {
      const float x = nd(rng);
      if (pt.elem == KVElem::kF32) std::memcpy(&buf[size_t(i * 4)], &x, 4);
      else if (pt.elem == KVElem::kBF16) {
        const bf16_t b = f32_to_bf16(x);
        std::memcpy(&buf[size_t(i * 2)], &b, 2);
      } else buf[size_t(i)] = uint8_t(int8_t(std::lround(std::fmax(-127.0f, std::fmin(127.0f, x * 40.0f)))));
    }
  };
  fill(pt.k, pt.ks, s.head_dim);
  if (!s.latent) fill(pt.v, pt.vs, vd);
  // Pages in a scrambled order, as a pool hands them out after some churn.
  pt.pages.resize(size_t(n_pages));
  for (int64_t i = 0; i < n_pages; ++i) pt.pages[size_t(i)] = int32_t(i);
  std::shuffle(pt.pages.begin(), pt.pages.end(), rng);
  pt.view = KVLayerView{pt.k.data(), s.latent ? pt.k.data() : pt.v.data(), page_size, s.kv_heads, s.head_dim,
                        s.latent ? vd : 0};
  if (s.latent) pt.view.v_row = s.head_dim;
  pt.view.elem = pt.elem;
  pt.view.k_scale = pt.ks.data();
  pt.view.v_scale = s.latent ? pt.ks.data() : pt.vs.data();
  pt.p = AttnParams{s.heads, s.kv_heads, s.head_dim, float(1.0 / std::sqrt(double(s.head_dim)))};
  pt.q.resize(size_t(pt.n_q * s.heads * s.head_dim));
  for (float& x : pt.q) x = nd(rng);
  pt.out.resize(size_t(pt.n_q * s.heads * vd));
  pt.seq = AttnSeq{0, pt.n_q, pt.ctx - pt.n_q, pt.pages.data()};
}

// mla_heads: MLA's latent shape as MlaAttention ran it before the key split, each member alone
// over its share of the query heads (every member reading the whole latent cache).
double run(ThreadTeam& team, Point& pt, int64_t reps, bool mla_heads) {
  const int64_t vd = pt.view.value_dim();
  const int64_t ldq = pt.shape->heads * pt.shape->head_dim, ldo = pt.shape->heads * vd;
  // cpu[member * reps + r]: the member's CPU seconds in call r.
  std::vector<double> cpu(size_t(team.size() * reps), 0.0);
  const double t0 = now_s();
  team.run([&](Team& t) {
    for (int64_t r = 0; r < reps; ++r) {
      const double c0 = thread_cpu_s();
      if (mla_heads && pt.shape->latent) {
        const Range hs = t.share(pt.shape->heads);
        if (!hs.empty()) {
          AttnParams p = pt.p;
          p.n_heads = hs.size();
          paged_attention(pt.q.data() + hs.begin * pt.shape->head_dim, ldq, &pt.seq, 1, pt.view, p,
                          pt.out.data() + hs.begin * vd, ldo);
        }
        t.barrier();
      } else {
        paged_attention(t, pt.q.data(), ldq, &pt.seq, 1, pt.view, pt.p, pt.out.data(), ldo);
      }
      cpu[size_t(t.id() * reps + r)] = thread_cpu_s() - c0;
    }
  });
  const double wall = (now_s() - t0) / double(reps);
  double sum = 0, mx = 0;  // over the calls: all members' CPU time, the busiest member's
  for (int64_t r = 0; r < reps; ++r) {
    double m = 0;
    for (int i = 0; i < team.size(); ++i) {
      sum += cpu[size_t(i * reps + r)];
      m = std::max(m, cpu[size_t(i * reps + r)]);
    }
    mx += m;
  }
  pt.cpu_sum = std::min(pt.cpu_sum, sum / double(reps));
  pt.cpu_max = std::min(pt.cpu_max, mx / double(reps));
  return wall;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"single-sequence decode attention time at long context"};
  std::string contexts = "1024,8192,32768", kvs = "fp32", shapes = "gqa-32q-4kv-128,mqa-32q-1kv-128";
  int threads = 2;
  int64_t reps = 20, rounds = 5, page_size = 16, queries = 1;
  std::string mla = "team";
  app.add_option("--contexts", contexts, "comma-separated context lengths")->capture_default_str();
  app.add_option("--kv", kvs, "comma-separated KV element types (fp32, bf16, int8)")->capture_default_str();
  app.add_option("--shapes", shapes, "comma-separated: gqa-32q-4kv-128, llama-32q-4kv-64, gqa-32q-8kv-128, gqa-16q-8kv-128, mqa-32q-1kv-128, mha-32q-32kv-128, mla-16q-latent-576")
      ->capture_default_str();
  app.add_option("--threads", threads, "team size")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--reps", reps, "calls per round")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--rounds", rounds, "rounds (the fastest is kept)")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--page-size", page_size)->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(4096)));
  app.add_option("--queries", queries, "query rows per call (1: decode; more: the last rows of a prefill chunk)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--mla", mla,
                 "latent shape: 'team' (paged_attention on the team) or 'heads' (each member alone on its share of "
                 "the heads, as MlaAttention did before the key split)")
      ->check(CLI::IsMember({"team", "heads"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::vector<Point> pts;
  for (const std::string& sn : split(shapes)) {
    const Shape* sh = nullptr;
    for (const Shape& s : kShapes)
      if (sn == s.name) sh = &s;
    if (!sh) {
      std::fprintf(stderr, "--shapes: unknown '%s'\n", sn.c_str());
      return 2;
    }
    for (const std::string& c : split(contexts))
      for (const std::string& e : split(kvs)) {
        pts.emplace_back();
        pts.back().shape = sh;
        pts.back().ctx = std::stoll(c);
        if (pts.back().ctx < 1) {
          std::fprintf(stderr, "--contexts: %s is not a context length (>= 1)\n", c.c_str());
          return 2;
        }
        pts.back().n_q = std::min<int64_t>(queries, pts.back().ctx);
        pts.back().elem = elem_of(e);
      }
  }
  for (Point& pt : pts) make(pt, page_size);
  ThreadTeam team(threads);
  const bool mla_heads = mla == "heads";
  for (Point& pt : pts) run(team, pt, 2, mla_heads);  // warm-up
  for (int64_t r = 0; r < rounds; ++r)
    for (Point& pt : pts) pt.best = std::min(pt.best, run(team, pt, reps, mla_heads));
  std::printf("%d threads, page %lld, fastest of %lld rounds of %lld calls, mla %s\n", threads, (long long)page_size,
              (long long)rounds, (long long)reps, mla.c_str());
  std::printf("%-20s %8s %7s %5s %12s %12s %9s %12s %12s\n", "shape", "context", "queries", "kv", "us/call",
              "GB/s of KV", "GFLOP/s", "cpu us all", "cpu us max");
  for (const Point& pt : pts) {
    const double bytes = double(pt.k.size() + pt.v.size()) * double(pt.ctx) /
                         double(((pt.ctx + page_size - 1) / page_size) * page_size);
    // Products and sums of q.k and p.v for every (query row, head, key it sees).
    const Shape& s = *pt.shape;
    const double keys = double(pt.n_q) * double(pt.ctx) - double(pt.n_q) * double(pt.n_q - 1) / 2;
    const double flops = 2.0 * keys * double(s.heads) * double(s.head_dim + (s.v_dim ? s.v_dim : s.head_dim));
    std::printf("%-20s %8lld %7lld %5s %12.1f %12.2f %9.1f %12.1f %12.1f\n", s.name, (long long)pt.ctx,
                (long long)pt.n_q, kv_elem_name(pt.elem), pt.best * 1e6, bytes / pt.best / 1e9, flops / pt.best / 1e9,
                pt.cpu_sum * 1e6, pt.cpu_max * 1e6);
  }
  return 0;
}
