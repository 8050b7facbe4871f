// `dpserve bench offline`: fixed-shape batches through the real engine (every rank, no HTTP), for
// prefill / decode throughput at a chosen batch size, like SGLang's bench_offline_throughput.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <limits>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "apps/dpserve/launch.h"
#include "apps/dpserve/runtime_flags.h"
#include "bench_client/stats.h"
#include "core/check.h"
#include "kernels/isa.h"
#include "engine/runtime.h"
#include "model/default_model.h"

namespace dpserve::app {

namespace {

struct OfflineBenchArgs {
  RuntimeFlags rf;
  int64_t batch_size = 8, input_len = 128, output_len = 64, num_batches = 1, warmup_batches = 1;
  uint64_t seed = 1;
  bool json = false;
};

// Prompt ids drawn from [3, vocab): distinct for every request and batch, so no prefix is shared and
// the prefix cache cannot shorten a prefill.
std::vector<int32_t> random_prompt(int64_t len, int64_t vocab, uint64_t salt) {
  std::vector<int32_t> p(static_cast<size_t>(len));
  uint64_t x = salt * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  const uint64_t span = uint64_t(vocab > 3 ? vocab - 3 : vocab);
  const int32_t base = vocab > 3 ? 3 : 0;
  for (auto& t : p) {
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    t = base + int32_t((x * 0x2545F4914F6CDD1Dull >> 33) % span);
  }
  return p;
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// What one batch measured, as seen by the client: every token is stamped when its delivery arrives.
struct BatchTimes {
  double prefill_s = 0;  // submit -> the last request's first token
  double decode_s = 0;   // that moment -> the last token of the batch
  std::vector<double> gaps_s;  // time between consecutive tokens of each request
  int64_t steps = 0;
  // Sampled every 10 ms from the engine's stats: most requests running at once over all groups, and
  // most KV bytes held at once, as the mean over ranks (each rank holds its group's pages).
  int64_t peak_running = 0;
  double peak_kv_bytes_per_rank = 0;
  double kv_bytes_per_rank_per_running = 0;  // at that peak: per rank, per request running then
};

// Samples the engine's group stats until stopped: peak running requests and peak KV bytes per rank.
class PeakMonitor {
 public:
  PeakMonitor(DpEngine& eng, int64_t ranks_per_group, int64_t world) : t_([this, &eng, ranks_per_group, world] {
      while (!stop_) {
        const EngineStats s = eng.stats();
        int64_t running = 0;
        double bytes = 0;
        for (const GroupStats& g : s.groups) {
          running += g.running;
          bytes += double(ranks_per_group) * double(g.kv_pages_used * g.kv_bytes_per_page);
        }
        peak_running = std::max(peak_running, running);
        if (bytes / double(world) > peak_bytes) {
          peak_bytes = bytes / double(world);
          running_at_peak_bytes = running;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }) {}
  ~PeakMonitor() {
    stop_ = true;
    t_.join();
  }
  int64_t peak_running = 0;
  double peak_bytes = 0;
  int64_t running_at_peak_bytes = 0;

 private:
  std::atomic<bool> stop_{false};
  std::thread t_;
};

BatchTimes run_batch(DpEngine& engine, const OfflineBenchArgs& a, int64_t vocab, int64_t output_len, uint64_t salt,
                     int64_t ranks_per_group, int64_t world) {
  const size_t B = size_t(a.batch_size);
  auto monitor = std::make_unique<PeakMonitor>(engine, ranks_per_group, world);
  std::vector<std::shared_ptr<RequestStream>> streams(B);
  std::vector<std::vector<double>> stamps(B);
  std::vector<std::string> errors(B);
  const int64_t steps0 = engine.stats().steps_total;
  const double t0 = seconds_now();
  std::vector<Request> batch(B);
  for (size_t i = 0; i < B; ++i) {
    Request& r = batch[i];
    r.input_ids = random_prompt(a.input_len, vocab, salt * 1000003ull + i);
    r.params.temperature = 0;
    r.params.max_new_tokens = output_len;
    r.params.ignore_eos = true;
  }
  streams = engine.enqueue_together(std::move(batch));  // one step takes them all
  // One reader per request, so a token's stamp is when it was delivered, not when a single reader got to it.
  std::vector<std::thread> readers;
  readers.reserve(B);
  for (size_t i = 0; i < B; ++i)
    readers.emplace_back([&, i] {
      Response resp;
      while (true) {
        if (!streams[i]->next(resp, std::chrono::milliseconds(1000))) continue;
        const double t = seconds_now();
        for (size_t k = 0; k < resp.tokens.size(); ++k) stamps[i].push_back(t);
        if (resp.finished) {
          if (resp.finish_reason != "length")
            errors[i] = fmt::format("finished with '{}' {}", resp.finish_reason, resp.error);
          break;
        }
      }
    });
  for (auto& th : readers) th.join();
  BatchTimes bt;
  bt.peak_running = monitor->peak_running;
  bt.peak_kv_bytes_per_rank = monitor->peak_bytes;
  if (monitor->running_at_peak_bytes > 0)
    bt.kv_bytes_per_rank_per_running = monitor->peak_bytes / double(monitor->running_at_peak_bytes);
  monitor.reset();
  bt.steps = engine.stats().steps_total - steps0;
  double first_all = t0, end_all = t0;
  for (size_t i = 0; i < B; ++i) {
    if (!errors[i].empty()) fail("bench offline: request {} of the batch {}", i, errors[i]);
    if (int64_t(stamps[i].size()) != output_len)
      fail("bench offline: request {} produced {} tokens, expected {}", i, stamps[i].size(), output_len);
    first_all = std::max(first_all, stamps[i].front());
    end_all = std::max(end_all, stamps[i].back());
    for (size_t k = 1; k < stamps[i].size(); ++k) bt.gaps_s.push_back(stamps[i][k] - stamps[i][k - 1]);
  }
  bt.prefill_s = first_all - t0;
  bt.decode_s = end_all - first_all;
  return bt;
}

void run_offline_bench(OfflineBenchArgs& a) {
  relaunch_under_mpirun_if_needed(requested_world(a.rf), a.rf.rt.watchdog_timeout, a.rf.numa, a.rf.rt.threads);
  ModelLocation loc = resolve_model(a.rf.rt.model_path, a.rf.tokenizer_path);
  a.rf.rt.model_path = loc.model;
  a.rf.rt.sched.enable_prefix_cache = !a.rf.disable_radix_cache;
  auto rt = Runtime::start(a.rf.rt);
  DpEngine* engine = rt->engine();
  if (!engine) {  // other ranks: serve steps until rank 0 is done
    rt->run();
    return;
  }
  const ModelConfig& cfg = rt->model_config();
  // The other ranks are in their step loop already: the error goes through the engine, whose shutdown
  // stops them too (as generate's bad prompts do). Thrown here, it left them waiting for a step.
  if (a.input_len + a.output_len > cfg.max_pos)
    rt->run_with_client([&](DpEngine&) {
      fail("--input-len {} + --output-len {} exceeds the model's context of {} positions", a.input_len, a.output_len,
           cfg.max_pos);
    });
  spdlog::info("bench offline: {} ({} layers, hidden {}, {}), {}; {} batch(es) of {} x ({} in, {} out)", loc.model,
               cfg.n_layers, cfg.hidden, dtype_name(cfg.dtype), rt->describe(), a.num_batches, a.batch_size,
               a.input_len, a.output_len);

  std::vector<BatchTimes> batches;
  CollectiveTimes coll_start, coll_end;
  EngineStats spec0, spec1;  // speculative decoding's counters around the measured batches
  const int64_t world = rt->world_size(), rpg = world / engine->dp_size();
  rt->run_with_client([&](DpEngine& eng) {
    // Warm-up: same prompts' shape, two tokens out, so weights are paged in and buffers sized.
    for (int64_t w = 0; w < a.warmup_batches; ++w)
      run_batch(eng, a, cfg.vocab, std::min<int64_t>(a.output_len, 2), a.seed * 7919 + 1000 + uint64_t(w), rpg, world);
    coll_start = rt->collective_times();
    spec0 = eng.stats();
    for (int64_t k = 0; k < a.num_batches; ++k) {
      batches.push_back(run_batch(eng, a, cfg.vocab, a.output_len, a.seed * 7919 + uint64_t(k), rpg, world));
      spdlog::info("batch {}/{}: prefill {:.3f} s, decode {:.3f} s, {} steps", k + 1, a.num_batches,
                   batches.back().prefill_s, batches.back().decode_s, batches.back().steps);
    }
    coll_end = rt->collective_times();
    spec1 = eng.stats();
  });
  // Rank 0's collectives during the measured batches (per call; a layer makes one of each kind).
  const CollectiveTimes coll = coll_end.minus(coll_start);
  nlohmann::json coll_j = nlohmann::json::object();
  const std::pair<const char*, const CollectiveTimes::Entry*> kinds[] = {
      {"attn_allreduce", &coll.attn_allreduce}, {"mlp_allreduce", &coll.mlp_allreduce},
      {"dp_gather", &coll.dp_gather},           {"dp_scatter", &coll.dp_scatter},
      {"vocab_allgather", &coll.vocab_allgather}};
  for (const auto& [name, e] : kinds)
    if (e->calls > 0)
      coll_j[name] = {{"calls", e->calls},         {"seconds", e->seconds},
                      {"mean_us", e->mean_us()},    {"bytes", e->bytes},
                      {"wait_seconds", e->wait_seconds}, {"mean_wait_us", e->mean_wait_us()}};

  const int64_t B = a.batch_size, K = a.num_batches;
  double prefill_s = 0, decode_s = 0;
  int64_t steps = 0, peak_running = 0;
  double peak_kv = 0, kv_per_req = 0;
  std::vector<double> gaps_ms;
  for (const auto& b : batches) {
    peak_running = std::max(peak_running, b.peak_running);
    if (b.peak_kv_bytes_per_rank > peak_kv) {
      peak_kv = b.peak_kv_bytes_per_rank;
      kv_per_req = b.kv_bytes_per_rank_per_running;
    }
    prefill_s += b.prefill_s;
    decode_s += b.decode_s;
    steps += b.steps;
    for (double g : b.gaps_s) gaps_ms.push_back(g * 1e3);
  }
  const int64_t in_tokens = B * a.input_len * K, out_tokens = B * a.output_len * K;
  // Tokens produced by decode steps: every one but each request's first (which prefill samples).
  const int64_t decode_tokens = B * (a.output_len - 1) * K;
  const double total_s = prefill_s + decode_s;
  auto ratio = [](double n, double d) { return d > 0 ? n / d : 0.0; };
  const bench::Summary itl = bench::summarize(gaps_ms);

  nlohmann::json j{{"tool", "dpserve bench offline"},
                   {"model_path", loc.model},
                   {"arch", cfg.arch_name},
                   {"dtype", dtype_name(cfg.dtype)},
                   {"tp_size", a.rf.rt.tp_size},
                   {"dp_size", a.rf.rt.dp_size},
                   {"enable_dp_attention", a.rf.rt.enable_dp_attention},
                   {"world_size", rt->world_size()},
                   {"layout", rt->describe()},
                   {"kernels", kernels::kernels_description()},
                   {"batch_size", B},
                   {"input_len", a.input_len},
                   {"output_len", a.output_len},
                   {"num_batches", K},
                   {"warmup_batches", a.warmup_batches},
                   {"input_tokens", in_tokens},
                   {"output_tokens", out_tokens},
                   {"decode_tokens", decode_tokens},
                   {"steps", steps},
                   {"prefill_seconds", prefill_s},
                   {"decode_seconds", decode_s},
                   {"total_seconds", total_s},
                   {"prefill_tok_s", ratio(double(in_tokens), prefill_s)},
                   {"decode_tok_s", ratio(double(decode_tokens), decode_s)},
                   {"output_tok_s", ratio(double(out_tokens), total_s)},
                   {"total_tok_s", ratio(double(in_tokens + out_tokens), total_s)},
                   {"decode_step_ms", a.output_len > 1 ? 1e3 * decode_s / double(K * (a.output_len - 1)) : 0.0},
                   {"itl_ms_mean", itl.mean},
                   {"itl_ms_p50", itl.median},
                   {"itl_ms_p90", itl.p90},
                   {"itl_ms_p99", itl.p99},
                   {"kv_tokens_per_rank", rt->kv_tokens_per_rank()},
                   {"peak_running_requests", peak_running},
                   {"peak_kv_bytes_per_rank", peak_kv},
                   {"kv_bytes_per_rank_per_running_request", kv_per_req},
                   {"collectives_rank0", coll_j}};
  const int64_t drafted = spec1.spec_draft_tokens_total - spec0.spec_draft_tokens_total;
  const int64_t accepted = spec1.spec_accepted_tokens_total - spec0.spec_accepted_tokens_total;
  const int64_t verifies = spec1.spec_verify_steps_total - spec0.spec_verify_steps_total;
  if (a.rf.rt.sched.spec.enabled())
    j["speculative"] = {{"algorithm", to_string(a.rf.rt.sched.spec.algorithm)},
                        {"draft_tokens", drafted},
                        {"accepted_tokens", accepted},
                        {"verify_steps", verifies},
                        {"accept_rate", ratio(double(accepted), double(drafted))},
                        {"accept_length", verifies > 0 ? 1.0 + double(accepted) / double(verifies) : 0.0}};
  if (a.json) {
    std::cout << j.dump() << "\n";
  } else {
    std::printf("dpserve bench offline: %s, %s\n", loc.model.c_str(), rt->describe().c_str());
    std::printf("  batches            %lld x %lld requests (%lld in, %lld out)\n", (long long)K, (long long)B,
                (long long)a.input_len, (long long)a.output_len);
    std::printf("  prefill            %lld tokens in %.3f s = %.1f tok/s\n", (long long)in_tokens, prefill_s,
                j["prefill_tok_s"].get<double>());
    std::printf("  decode             %lld tokens in %.3f s = %.1f tok/s (%.2f ms per step)\n",
                (long long)decode_tokens, decode_s, j["decode_tok_s"].get<double>(),
                j["decode_step_ms"].get<double>());
    std::printf("  output             %lld tokens in %.3f s = %.1f tok/s\n", (long long)out_tokens, total_s,
                j["output_tok_s"].get<double>());
    std::printf("  inter-token (ms)   mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f\n", itl.mean, itl.median, itl.p90,
                itl.p99);
    std::printf("  steps              %lld\n", (long long)steps);
    if (a.rf.rt.sched.spec.enabled())
      std::printf("  speculative        %s: %lld of %lld drafted tokens accepted (%.1f %%) in %lld verifications, "
                  "%.2f tokens per verification\n",
                  to_string(a.rf.rt.sched.spec.algorithm), (long long)accepted, (long long)drafted,
                  100.0 * ratio(double(accepted), double(drafted)), (long long)verifies,
                  j["speculative"]["accept_length"].get<double>());
    std::printf("  peak running       %lld requests at once (all groups)\n", (long long)peak_running);
    std::printf("  peak KV per rank   %.1f MiB, %.1f KiB per rank per request running then\n", peak_kv / 1048576.0,
                kv_per_req / 1024.0);
    for (const auto& [name, e] : kinds)
      if (e->calls > 0)
        std::printf("  %-18s %lld calls, %.3f s, %.1f us per call%s, %.1f KiB per call (rank 0)\n", name,
                    (long long)e->calls, e->seconds, e->mean_us(),
                    e->wait_seconds > 0 ? fmt::format(" after {:.1f} us waiting for every rank", e->mean_wait_us()).c_str()
                                        : "",
                    double(e->bytes) / 1024.0 / double(e->calls));
  }
  std::cout.flush();
}

}  // namespace

void register_bench_offline(CLI::App& bench) {
  auto a = std::make_shared<OfflineBenchArgs>();
  CLI::App* o = bench.add_subcommand(
      "offline",
      "Throughput of the engine without HTTP: K batches of B random prompts of I tokens, O tokens out each "
      "(greedy, EOS ignored), on every rank of the layout asked for.\n"
      "Prefill time runs from submitting a batch to the last request's first token; decode time from there to "
      "the batch's last token. With the default --chunked-prefill-size a large batch's prefill overlaps the "
      "first requests' decode; give --chunked-prefill-size and --max-prefill-tokens >= B*I to keep the phases "
      "apart.");
  add_runtime_flags(o, a->rf);
  o->add_option("--batch-size,-b", a->batch_size, "Requests per batch (B), submitted together")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(4096)));
  o->add_option("--input-len", a->input_len, "Prompt tokens per request (I), random ids")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  o->add_option("--output-len", a->output_len, "Tokens generated per request (O)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  o->add_option("--num-batches", a->num_batches, "Measured batches (K), run one after another")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  o->add_option("--warmup-batches", a->warmup_batches, "Unmeasured batches first (same B and I, 2 tokens out)")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(100)));
  o->add_option("--seed", a->seed, "Seed of the random prompt ids")
      ->capture_default_str()->check(CLI::Range(int64_t(0), std::numeric_limits<int64_t>::max()));
  o->add_flag("--json", a->json,
              "Print one JSON line instead of the table: tokens, seconds, prefill_tok_s, decode_tok_s, "
              "output_tok_s, decode_step_ms, itl_ms_p50/p90/p99, steps, layout");
  o->callback([a] { run_offline_bench(*a); });
}

}  // namespace dpserve::app
