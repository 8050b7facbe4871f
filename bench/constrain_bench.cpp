// Constrained decoding cost, printed next to what it competes with, measured in the same run:
//  * compile time of the real-world tool schemas (tests/constrain/fixtures), cold and cached;
//  * mask time per decode step with 32 running constrained requests over the Qwen3 vocabulary
//    (151,936-wide logits rows: fill the mask, apply it), cold caches at the start as a fresh server has;
//  * the TinyLlama-1.1B-shape decode step at batch 32, alternated with the mask runs (A/B), so the
//    ratio is taken on the same machine state.
// With --structural-tag, each tool becomes a structural tag instead (free text in which a Qwen3-style
// <tool_call> must be a valid call of it, as strict tool_choice auto compiles): the free-text masks.
//
//   /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --out /tmp/tinyllama
//   build/bin/constrain_bench --tokenizer ../shared/tokenizers/qwen3 --model-path /tmp/tinyllama
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "constrain/compile_cache.h"
#include "constrain/constraint.h"
#include "constrain/json_schema_compiler.h"
#include "constrain/matcher.h"
#include "engine/runtime.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

using namespace dpserve;
using namespace dpserve::constrain;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

struct MaskRun {
  std::vector<double> step_ms;  // the 32 requests' mask work per step
  uint64_t misses = 0;
  double compute_ms = 0;
  int64_t finished = 0;
};

// `n` requests decoding under constraints for `steps` steps; a finished request restarts with the
// next schema of the list, so new automata keep arriving as on a server.
MaskRun run_masks(ConstraintKind kind, const std::vector<std::string>& schemas, std::shared_ptr<const VocabIndex> vocab,
                  int n, int steps, uint64_t seed, int warm_steps = 0) {
  CompileCache compiled;
  std::map<uint64_t, std::shared_ptr<TokenMaskCache>> caches;
  auto cache_for = [&](size_t k) {
    auto a = compiled.get({kind, schemas[k % schemas.size()]});
    auto& c = caches[a->fingerprint()];
    if (!c) c = std::make_shared<TokenMaskCache>(a, vocab);
    return c;
  };
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Matcher>> m;
  size_t next_schema = 0;
  for (int i = 0; i < n; ++i) m.push_back(std::make_unique<Matcher>(cache_for(next_schema++)));
  const int64_t V = vocab->mask_size();
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<uint64_t> mask(vocab->mask_words());
  // Tokens that move JSON on (a quote, comma, bracket, colon, digit): a model writes structure,
  // not only string content, so walks pick them often.
  std::vector<bool> structural(size_t(V), false);
  for (int64_t t = 0; t < V; ++t) {
    if (!vocab->is_text(int32_t(t))) continue;
    const std::string& b = vocab->bytes(int32_t(t));
    structural[size_t(t)] = b.size() <= 3 && b.find_first_of("\",:{}[]0123456789") != std::string::npos;
  }
  MaskRun out;
  std::vector<int32_t> allowed, pick;
  for (int step = -warm_steps; step < steps; ++step) {
    if (step == 0) {
      out.finished = 0;
      for (auto& [k, c] : caches) {
        out.misses -= c->misses();
        out.compute_ms -= 1000 * c->compute_seconds();
      }
    }
    double total = 0;
    for (int i = 0; i < n; ++i) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      const auto t0 = Clock::now();
      m[size_t(i)]->fill_mask(mask.data());
      apply_mask(mask.data(), logits.data(), V);
      total += ms_since(t0);
      allowed.clear();
      pick.clear();
      for (int64_t t = 0; t < V; ++t)
        if ((mask[size_t(t) >> 6] >> (t & 63)) & 1) {
          allowed.push_back(int32_t(t));
          if (structural[size_t(t)]) pick.push_back(int32_t(t));
        }
      const bool structure = !pick.empty() && std::uniform_real_distribution<double>(0, 1)(rng) < 0.35;
      const auto& from = structure ? pick : allowed;
      const int32_t tok = from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
      m[size_t(i)]->accept(tok);
      if (m[size_t(i)]->ended() || m[size_t(i)]->must_end()) {
        ++out.finished;
        m[size_t(i)] = std::make_unique<Matcher>(cache_for(next_schema++));
      }
    }
    if (step >= 0) out.step_ms.push_back(total);
  }
  for (auto& [k, c] : caches) {
    out.misses += c->misses();
    out.compute_ms += 1000 * c->compute_seconds();
  }
  return out;
}

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// Decode step time at batch `n`: n greedy requests of 16-token prompts, `decode` tokens each, all
// running together; the time from every request's first token to the last token, per step.
double decode_step_ms(DpEngine& engine, int n, int decode, int64_t vocab) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < n; ++i) {
    Request r;
    for (int k = 0; k < 16; ++k) r.input_ids.push_back(int32_t(3 + (i * 16 + k) * 7919 % (vocab - 3)));
    r.params.temperature = 0;
    r.params.max_new_tokens = decode;
    r.params.ignore_eos = true;
    streams.push_back(engine.enqueue(std::move(r)));
  }
  std::vector<double> first(size_t(n), 0), last(size_t(n), 0);
  std::vector<std::thread> readers;
  for (int i = 0; i < n; ++i)
    readers.emplace_back([&, i] {
      Response resp;
      for (;;) {
        if (!streams[size_t(i)]->next(resp, std::chrono::milliseconds(1000))) continue;
        if (!resp.tokens.empty()) {
          last[size_t(i)] = now_s();
          if (first[size_t(i)] == 0) first[size_t(i)] = last[size_t(i)];
        }
        if (resp.finished) return;
      }
    });
  for (auto& t : readers) t.join();
  const double t_first = *std::max_element(first.begin(), first.end());
  const double t_last = *std::max_element(last.begin(), last.end());
  return 1000.0 * (t_last - t_first) / double(decode - 1);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Constrained decoding: compile time, mask time per step vs the decode step"};
  std::string tok_path, model_path, tools_path = std::string(DPSERVE_SOURCE_DIR) + "/tests/constrain/fixtures/tool_schemas.json";
  int requests = 32, steps = 150, decode = 16, rounds = 2, threads = 0, warm_schemas = 8;
  bool structural = false;
  app.add_option("--tokenizer", tok_path, "tokenizer folder (Qwen3: shared/tokenizers/qwen3)")->required();
  app.add_option("--model-path", model_path, "TinyLlama-1.1B-shape HF folder for the decode step (optional)");
  app.add_option("--tools", tools_path, "tool schemas (OpenAI tools array)")->capture_default_str();
  app.add_option("--requests", requests, "constrained requests running at once")->capture_default_str();
  app.add_option("--steps", steps, "decode steps per mask run")->capture_default_str();
  app.add_option("--decode-tokens", decode, "tokens per sequence in each decode run")->capture_default_str();
  app.add_option("--rounds", rounds, "A/B rounds (decode run, mask runs)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads for the decode step (0 = all cores)");
  app.add_option("--warm-schemas", warm_schemas, "distinct schemas in the steady-state run")->capture_default_str();
  app.add_flag("--structural-tag", structural,
               "each tool as a structural tag: free text, a <tool_call> of it valid once opened");
  CLI11_PARSE(app, argc, argv);
  const ConstraintKind kind = structural ? ConstraintKind::kStructuralTag : ConstraintKind::kJsonSchema;
  if (threads > 0) omp_set_num_threads(threads);

  auto tok = Tokenizer::load(tok_path);
  const int64_t mask_size = 151936;  // Qwen3's logits width (its vocabulary padded)
  std::vector<double> vt;
  std::shared_ptr<const VocabIndex> vocab;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    vocab = VocabIndex::from_tokenizer(*tok, mask_size);
    vt.push_back(ms_since(t0));
  }
  std::printf("vocabulary index: %lld tokens, %zu trie nodes, built in %.0f ms (median of 3, once per tokenizer)\n",
              (long long)tok->vocab_size(), vocab->num_nodes(), percentile(vt, 0.5));

  std::ifstream f(tools_path);
  std::stringstream ss;
  ss << f.rdbuf();
  const auto tools = nlohmann::ordered_json::parse(ss.str());
  std::vector<std::string> schemas;
  std::vector<double> ct;
  double weather_ms = 0;
  for (const auto& t : tools) {
    schemas.push_back(t["function"]["parameters"].dump());
    if (structural) {
      const std::string name = t["function"]["name"].get<std::string>();
      schemas.back() = nlohmann::ordered_json{
          {"structures", {{{"begin", "<tool_call>\n{\"name\": \"" + name + "\", \"arguments\": "},
                           {"schema", t["function"]["parameters"]}, {"end", "}\n</tool_call>"}}}},
          {"triggers", {"<tool_call>"}}}.dump();
    }
    const auto t0 = Clock::now();
    auto a = compile_constraint({kind, schemas.back()});
    ct.push_back(ms_since(t0));
    if (t["function"]["name"] == "get_current_weather") weather_ms = ct.back();
    if (getenv("CONSTRAIN_BENCH_VERBOSE"))
      std::printf("  %-28s %7.2f ms, %zu states, %zu bytes serialized\n", t["function"]["name"].get<std::string>().c_str(), ct.back(), a->num_states(), a->serialize().size());
  }
  CompileCache cache;
  cache.get({kind, schemas[0]});
  const auto h0 = Clock::now();
  for (int i = 0; i < 1000; ++i) cache.get({kind, schemas[0]});
  const double hit_us = ms_since(h0) * 1000.0;  // ns per hit over 1000 hits
  std::printf("compile, %zu tool schemas: median %.2f ms, p90 %.2f ms, max %.2f ms (get_current_weather %.2f ms); "
              "cached: %.0f ns (target <= 50 ms)\n",
              schemas.size(), percentile(ct, 0.5), percentile(ct, 0.9), percentile(ct, 1.0), weather_ms, hit_us);

  std::vector<double> decode_ms, cold_mean, warm_mean;
  // A/B rounds: the decode step (the engine alone, no masks), then the mask runs (engine idle).
  auto rounds_fn = [&](DpEngine* engine, int64_t model_vocab) {
  for (int r = 0; r < rounds; ++r) {
    if (engine) decode_ms.push_back(decode_step_ms(*engine, requests, decode, model_vocab));
    // Cold: every finished request is replaced by one with a schema not seen yet in this run.
    const MaskRun cold = run_masks(kind, schemas, vocab, requests, steps, 1234 + uint64_t(r));
    // Steady state: a server that has served its tools before (caches warmed by earlier requests).
    const std::vector<std::string> few(schemas.begin(), schemas.begin() + std::min<size_t>(warm_schemas, schemas.size()));
    const MaskRun warm = run_masks(kind, few, vocab, requests, steps, 4321 + uint64_t(r), 4 * steps);
    for (const auto* mr : {&cold, &warm}) {
      double sum = 0;
      for (double x : mr->step_ms) sum += x;
      (mr == &cold ? cold_mean : warm_mean).push_back(sum / double(mr->step_ms.size()));
      std::printf("round %d, %s: masks for %d requests per step: mean %.2f ms, p50 %.2f ms, p99 %.2f ms "
                  "(%llu token-class computations, %.0f ms of them; %lld outputs completed)\n",
                  r, mr == &cold ? "cold (a new schema per request)" : "steady state (8 schemas seen before)", requests,
                  (mr == &cold ? cold_mean : warm_mean).back(), percentile(mr->step_ms, 0.5),
                  percentile(mr->step_ms, 0.99), (unsigned long long)mr->misses, mr->compute_ms, (long long)mr->finished);
    }
    if (engine) std::printf("round %d: decode step at batch %d: %.1f ms\n", r, requests, decode_ms.back());
  }
  };
  if (model_path.empty()) {
    rounds_fn(nullptr, 0);
  } else {
    RuntimeOptions ro;
    ro.model_path = model_path;
    ro.threads = threads;
    ro.sched.max_running_requests = requests;
    ro.max_total_tokens = int64_t(requests) * (16 + decode) + 64;
    auto rt = Runtime::start(ro);
    const int64_t v = rt->model_config().vocab;
    rt->run_with_client([&](DpEngine& engine) {
      decode_step_ms(engine, 1, 3, v);  // warm the weights into the page cache
      rounds_fn(&engine, v);
    });
  }
  if (!decode_ms.empty()) {
    const double d = percentile(decode_ms, 0.5), c = percentile(cold_mean, 0.5), w = percentile(warm_mean, 0.5);
    std::printf("mask time per step / TinyLlama-1.1B decode step at batch %d (%.1f ms, %d threads): steady state "
                "%.2f ms = %.2f%%, cold %.2f ms = %.2f%% (target <= 5%%)\n",
                requests, d, omp_get_max_threads(), w, 100 * w / d, c, 100 * c / d);
  }
  return 0;
}
