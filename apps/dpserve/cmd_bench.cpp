// `dpserve bench serve`: a load generator in the style of SGLang's bench_serving, pointed at any
// OpenAI-compatible server (dpserve, SGLang, llama-server) so their numbers compare on one machine.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/dpserve/commands.h"
#include "bench_client/bench_run.h"
#include "bench_client/dataset.h"
#include "bench_client/progress_bar.h"
#include "bench_client/report.h"
#include "bench_client/server_metrics.h"
#include "bench_client/stream_request.h"
#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::app {
namespace {

struct ServeBenchArgs {
  std::string base_url = "http://127.0.0.1:30000", backend = "openai", endpoint, dataset = "random", dataset_path;
  std::string request_rate = "inf", model, output_file, tokenizer_path, api_key, tag, extra_request_body;
  size_t num_prompts = 1000, max_concurrency = 0, warmup = 1;
  int64_t random_input_len = 1024, random_output_len = 1024, sharegpt_output_len = 0;
  double random_range_ratio = 0.0, timeout = 300;
  uint64_t seed = 1;
  bool no_ignore_eos = false, no_progress = false, prompt_token_ids = false;
};

double parse_rate(const std::string& s) {
  if (s == "inf" || s == "INF" || s == "Inf") return INFINITY;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(v > 0)) fail("--request-rate must be a positive number or inf, got '{}'", s);
  return v;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open dataset file {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string now_iso8601() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void run_serve_bench(const ServeBenchArgs& a) {
  using namespace dpserve::bench;
  ClientConfig cc;
  cc.base_url = a.base_url;
  if (a.backend == "openai") {
    cc.backend = Backend::openai;
    cc.endpoint = a.endpoint.empty() ? "/v1/completions" : a.endpoint;
  } else if (a.backend == "sglang") {
    cc.backend = Backend::sglang;
    cc.endpoint = a.endpoint.empty() ? "/generate" : a.endpoint;
  } else {
    fail("--backend must be openai or sglang, got '{}'", a.backend);
  }
  cc.model = a.model;
  cc.api_key = a.api_key;
  cc.timeout_s = a.timeout;
  cc.ignore_eos = !a.no_ignore_eos;
  cc.extra_body = a.extra_request_body;
  if (a.prompt_token_ids) {
    if (cc.backend != Backend::openai || cc.endpoint.find("chat") != std::string::npos)
      fail("--prompt-token-ids needs --backend openai with a completions endpoint (chat messages are text)");
    if (a.tokenizer_path.empty()) fail("--prompt-token-ids needs --tokenizer-path (the ids come from it)");
    cc.prompt_token_ids = true;
  }
  const double rate = parse_rate(a.request_rate);
  if (a.num_prompts == 0) fail("--num-prompts must be >= 1");
  StreamClient client(cc);
  // An --output-file that cannot be written is found now, not after a run of minutes or hours (and without
  // creating it: a run that fails leaves no empty results file behind).
  if (!a.output_file.empty()) {
    namespace fs = std::filesystem;
    const fs::path out(a.output_file);
    const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
    std::error_code ec;
    if (fs::is_directory(out, ec)) fail("--output-file: {} is a folder", a.output_file);
    if (fs::exists(out, ec) ? access(out.c_str(), W_OK) != 0 : access(dir.c_str(), W_OK | X_OK) != 0)
      fail("--output-file: cannot append to {}: {}", a.output_file, std::strerror(errno));
  }

  std::unique_ptr<Tokenizer> tok;
  if (!a.tokenizer_path.empty()) tok = Tokenizer::load(a.tokenizer_path);
  std::vector<BenchRequest> reqs;
  if (a.dataset == "random") {
    // As SGLang's: with --dataset-path the prompts are cut from the file's first turns, else drawn.
    if (a.sharegpt_output_len != 0) fail("--sharegpt-output-len applies to --dataset sharegpt, not random");
    std::vector<PromptReply> texts;
    if (!a.dataset_path.empty()) {
      texts = parse_sharegpt(read_file(a.dataset_path));
      if (texts.empty()) fail("--dataset-path {}: no conversation has two turns", a.dataset_path);
    }
    reqs = make_random_dataset(
        {a.num_prompts, a.random_input_len, a.random_output_len, a.random_range_ratio, a.seed, &texts}, tok.get());
  } else if (a.dataset == "sharegpt") {
    if (a.dataset_path.empty()) fail("--dataset sharegpt needs --dataset-path FILE (ShareGPT JSON)");
    const auto pairs = parse_sharegpt(read_file(a.dataset_path));
    reqs = make_sharegpt_dataset(pairs, {a.num_prompts, a.sharegpt_output_len, a.seed}, tok.get());
    if (reqs.empty()) fail("{}: no conversation passed the length filters", a.dataset_path);
    if (reqs.size() < a.num_prompts)
      std::fprintf(stderr, "dpserve bench: only %zu of %zu prompts pass the ShareGPT length filters\n", reqs.size(),
                   a.num_prompts);
  } else {
    fail("--dataset must be random or sharegpt, got '{}'", a.dataset);
  }
  // Sent as ids (--prompt-token-ids, or the sglang backend's input_ids whenever a tokenizer made them), a
  // prompt is exactly its ids, not what its decoded text re-encodes to.
  if (cc.prompt_token_ids || cc.backend == Backend::sglang)
    for (auto& r : reqs)
      if (!r.prompt_ids.empty()) r.prompt_len = int64_t(r.prompt_ids.size());

  RunConfig rc;
  rc.request_rate = rate;
  rc.max_concurrency = a.max_concurrency;
  rc.seed = a.seed;
  rc.progress = !a.no_progress && stderr_is_tty();
  rc.warmup_requests = a.warmup;

  int64_t in_sum = 0, out_sum = 0;
  for (const auto& r : reqs) in_sum += r.prompt_len, out_sum += r.output_len;
  std::fprintf(stderr, "dpserve bench: %zu requests (mean input %.1f, mean output %.1f tokens) to %s%s\n",
               reqs.size(), double(in_sum) / double(reqs.size()), double(out_sum) / double(reqs.size()),
               a.base_url.c_str(), cc.endpoint.c_str());

  const std::optional<SpecCounters> spec_before = read_spec_counters(a.base_url, cc.api_key, cc.timeout_s);
  const RunOutcome run = run_benchmark(client, reqs, rc);
  SpecCounters spec_delta;
  if (spec_before) {
    if (const auto after = read_spec_counters(a.base_url, cc.api_key, cc.timeout_s)) {
      spec_delta.draft_tokens = after->draft_tokens - spec_before->draft_tokens;
      spec_delta.accepted_tokens = after->accepted_tokens - spec_before->accepted_tokens;
      spec_delta.verify_steps = after->verify_steps - spec_before->verify_steps;
    }
  }
  const BenchMetrics m = compute_metrics(reqs, run.results, run.duration_s);

  nlohmann::json settings{{"tool", "dpserve bench serve"},
                          {"date", now_iso8601()},
                          {"backend", a.backend},
                          {"base_url", a.base_url},
                          {"endpoint", cc.endpoint},
                          {"model", a.model},
                          {"dataset_name", a.dataset},
                          {"num_prompts", reqs.size()},
                          {"request_rate", std::isinf(rate) ? nlohmann::json("inf") : nlohmann::json(rate)},
                          {"max_concurrency", a.max_concurrency ? nlohmann::json(a.max_concurrency) : nlohmann::json()},
                          {"workers", run.workers},
                          {"seed", a.seed},
                          {"ignore_eos", cc.ignore_eos},
                          {"prompt_token_ids", cc.prompt_token_ids},
                          {"tokenizer", a.tokenizer_path},
                          {"tag", a.tag}};
  if (a.dataset == "random") {
    settings["random_input_len"] = a.random_input_len;
    settings["random_output_len"] = a.random_output_len;
    settings["random_range_ratio"] = a.random_range_ratio;
    if (!a.dataset_path.empty()) settings["dataset_path"] = a.dataset_path;
  } else {
    settings["dataset_path"] = a.dataset_path;
    settings["sharegpt_output_len"] = a.sharegpt_output_len;
  }
  // A dpserve server that speculates: its acceptance over the run (warm-up included).
  if (spec_delta.draft_tokens > 0) {
    const double drafted = spec_delta.draft_tokens, accepted = spec_delta.accepted_tokens;
    const double verifies = spec_delta.verify_steps;
    settings["speculative"] = {{"draft_tokens", drafted},
                               {"accepted_tokens", accepted},
                               {"verify_steps", verifies},
                               {"accept_rate", accepted / drafted},
                               {"accept_length", verifies > 0 ? 1.0 + accepted / verifies : 0.0}};
  }
  std::fputs(format_report(m, settings).c_str(), stdout);
  if (settings.contains("speculative"))
    std::printf("Speculative decoding (server /metrics): %.0f of %.0f drafted tokens accepted (%.1f %%), %.2f tokens "
                "per verification\n",
                settings["speculative"]["accepted_tokens"].get<double>(),
                settings["speculative"]["draft_tokens"].get<double>(),
                100.0 * settings["speculative"]["accept_rate"].get<double>(),
                settings["speculative"]["accept_length"].get<double>());
  std::fflush(stdout);
  if (!a.output_file.empty()) {
    std::ofstream f(a.output_file, std::ios::app);
    if (!f) fail("cannot open --output-file {} for appending", a.output_file);
    f << result_json(m, settings).dump() << '\n';
    if (!f) fail("could not write to {}", a.output_file);
  }
  if (m.completed == 0) fail("every request failed (first error: {})", m.errors.empty() ? "?" : m.errors[0]);
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto a = std::make_shared<ServeBenchArgs>();
  CLI::App* s = bench->add_subcommand("serve", "Load-test a running OpenAI-compatible server (like bench_serving)");
  s->add_option("--base-url", a->base_url, "Server URL, http://host:port[/prefix]")->capture_default_str();
  s->add_option("--backend", a->backend, "openai (completions/chat endpoints) or sglang (/generate with input_ids)")
      ->check(CLI::IsMember({"openai", "sglang"}))
      ->capture_default_str();
  s->add_option("--endpoint", a->endpoint, "Request path (default /v1/completions, or /generate for sglang)");
  s->add_option("--dataset", a->dataset, "random or sharegpt")
      ->check(CLI::IsMember({"random", "sharegpt"}))
      ->capture_default_str();
  s->add_option("--dataset-path", a->dataset_path,
                "ShareGPT JSON file (random: prompts are cut from its first turns, as SGLang's)");
  s->add_option("--num-prompts", a->num_prompts, "Number of requests")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  s->add_option("--random-input-len", a->random_input_len, "Random dataset: max input tokens")->capture_default_str();
  s->add_option("--random-output-len", a->random_output_len, "Random dataset: max output tokens")
      ->capture_default_str();
  s->add_option("--random-range-ratio", a->random_range_ratio,
                "Random dataset: lengths uniform in [L*ratio, L] (1 = fixed lengths)")
      ->capture_default_str();
  s->add_option("--sharegpt-output-len", a->sharegpt_output_len,
                "ShareGPT: fixed output length (0: the reply's length)")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  s->add_option("--request-rate", a->request_rate, "Requests/s, Poisson arrivals; inf sends all at once")
      ->capture_default_str();
  s->add_option("--max-concurrency", a->max_concurrency, "Most requests in flight (0: unlimited)")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  s->add_option("--seed", a->seed, "Seed for the dataset and the arrival times")
      ->capture_default_str()->check(CLI::Range(int64_t(0), std::numeric_limits<int64_t>::max()));
  s->add_option("--model", a->model, "\"model\" field of each request");
  s->add_option("--output-file", a->output_file, "Append one JSON result line to this file");
  s->add_option("--tokenizer-path", a->tokenizer_path,
                "Tokenizer for exact prompt lengths (random ids, ShareGPT lengths); else words / bytes/4");
  s->add_option("--timeout", a->timeout, "Seconds per request (and per silent read), at most 1e6")
      ->capture_default_str();
  s->add_option("--api-key", a->api_key, "Bearer token")->envname("OPENAI_API_KEY");
  s->add_option("--warmup-requests", a->warmup, "Unmeasured requests sent first; a failure aborts")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  s->add_option("--tag", a->tag, "Free text stored in the JSON result line (e.g. the server's name)");
  s->add_flag("--disable-ignore-eos", a->no_ignore_eos, "Do not send ignore_eos (outputs may end early)");
  s->add_flag("--prompt-token-ids", a->prompt_token_ids,
              "openai completions: send each prompt as token ids, so servers with different tokenizers "
              "(e.g. llama-server on a GGUF) process the same tokens; needs --tokenizer-path");
  s->add_option("--extra-request-body", a->extra_request_body,
                "JSON object merged into every request body (as SGLang's bench_serving), e.g. "
                "'{\"logit_bias\": {\"3\": -100}}'; replaces a field the client sets itself");
  s->add_flag("--disable-progress", a->no_progress, "No progress bar even on a terminal");
  s->callback([a, s] {
    // The random dataset's shape flags would otherwise be taken and do nothing.
    if (a->dataset == "sharegpt")
      for (const char* f : {"--random-input-len", "--random-output-len", "--random-range-ratio"})
        if (s->count(f)) fail("{} applies to --dataset random, not sharegpt", f);
    run_serve_bench(*a);
  });
  register_bench_offline(*bench);
}

}  // namespace dpserve::app
