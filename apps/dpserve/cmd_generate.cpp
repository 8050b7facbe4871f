// `dpserve generate`: offline generation from one prompt (or a file of prompts), streamed to stdout.
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "core/check.h"
#include "core/cpu.h"
#include "apps/dpserve/launch.h"
#include "apps/dpserve/runtime_flags.h"
#include "engine/offline_runner.h"
#include "engine/runtime.h"
#include "model/default_model.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::app {

namespace {

struct GenerateArgs {
  RuntimeFlags rf;
  std::string prompt, prompt_ids, prompts_file, dump_logits;
  int64_t max_new_tokens = 256;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f;
  float repetition_penalty = 1.0f, frequency_penalty = 0.0f, presence_penalty = 0.0f;
  int32_t top_k = -1;
  int64_t seed = -1;
  bool ignore_eos = false, json = false, no_bos = false, prompts_are_ids = false;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("");
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      fail("--prompt-ids: \"{}\" is not a token id (expected comma-separated non-negative integers)", item);
    }
  }
  return ids;
}

struct Output {
  std::vector<int32_t> ids;
  std::string finish_reason, error;
};

// Prints the text of one request as its tokens come (only for a single prompt).
class Streamer {
 public:
  Streamer(const Tokenizer* tok, int32_t context_id) {
    if (tok) {
      dec_ = std::make_unique<IncrementalDecoder>(*tok, true);
      dec_->push(context_id);  // e.g. no leading space right after BOS
    }
  }
  std::string push(int32_t id) { return dec_ ? dec_->push(id) : std::string(); }
  std::string flush() { return dec_ ? dec_->flush() : std::string(); }

 private:
  std::unique_ptr<IncrementalDecoder> dec_;
};

void run_generate(GenerateArgs& a) {
  relaunch_under_mpirun_if_needed(requested_world(a.rf));
  ModelLocation loc = resolve_model(a.rf.rt.model_path, a.rf.tokenizer_path);
  a.rf.rt.model_path = loc.model;
  a.rf.rt.sched.enable_prefix_cache = !a.rf.disable_radix_cache;
  std::unique_ptr<Tokenizer> tok;
  if (!loc.tokenizer.empty()) tok = Tokenizer::load(loc.tokenizer);
  if (tok) a.rf.rt.eos_ids = tok->eos_ids();

  SamplingParams sp;
  sp.temperature = a.temperature;
  sp.top_k = a.top_k;
  sp.top_p = a.top_p;
  sp.min_p = a.min_p;
  sp.repetition_penalty = a.repetition_penalty;
  sp.frequency_penalty = a.frequency_penalty;
  sp.presence_penalty = a.presence_penalty;
  if (a.seed >= 0) sp.seed = uint64_t(a.seed);
  sp.max_new_tokens = a.max_new_tokens;
  sp.ignore_eos = a.ignore_eos;
  if (auto err = sp.validate(); !err.empty()) fail("{}", err);
  if (!a.dump_logits.empty() && requested_world(a.rf) > 1) fail("--dump-logits works with --tp-size 1 only");

  auto rt = Runtime::start(a.rf.rt);
  const ModelConfig& cfg = rt->model_config();
  DpEngine* engine = rt->engine();
  if (!engine) {  // other ranks: serve steps until rank 0 is done
    rt->run();
    return;
  }
  spdlog::info("{}", loc.why);
  spdlog::info("model: {} layers, hidden {}, {} heads / {} KV heads, vocab {}, {} weights, kernels {}; {}",
               cfg.n_layers, cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.vocab, dtype_name(cfg.dtype),
               cpu_kernel_name(), rt->describe());

  const int32_t bos = tok ? tok->bos_id() : cfg.bos_id;
  auto make_prompt = [&](const std::string& text) {
    if (!tok) fail("no tokenizer found for {}: give --tokenizer-path, or --prompt-ids", loc.model);
    std::vector<int32_t> ids = tok->encode(text, false);
    if (!a.no_bos && bos >= 0) ids.insert(ids.begin(), bos);
    return ids;
  };
  std::vector<std::vector<int32_t>> prompts;
  if (!a.prompts_file.empty()) {
    std::ifstream in(a.prompts_file);
    if (!in) fail("--prompts-file: cannot open {}", a.prompts_file);
    for (std::string line; std::getline(in, line);)
      prompts.push_back(a.prompts_are_ids ? parse_ids(line) : make_prompt(line));
    if (prompts.empty()) fail("--prompts-file: {} has no prompts", a.prompts_file);
    for (auto& p : prompts)
      if (p.empty()) fail("--prompts-file: a line has no token ids");
  } else if (!a.prompt_ids.empty()) {
    prompts.push_back(parse_ids(a.prompt_ids));
    if (prompts[0].empty()) fail("--prompt-ids: no ids given");
  } else if (!a.prompt.empty()) {
    prompts.push_back(make_prompt(a.prompt));
  } else {
    // No prompt: start from BOS alone, as llama2.c's run.c does.
    if (bos < 0) fail("the model has no BOS token: give --prompt or --prompt-ids");
    prompts.push_back({bos});
  }
  for (auto& p : prompts)
    for (int32_t id : p)
      if (id < 0 || id >= cfg.vocab) fail("prompt token id {} is outside the vocabulary [0, {})", id, cfg.vocab);

  // The step loop runs on this (MPI) thread; a helper thread feeds the prompts and collects outputs.
  std::vector<Output> outs(prompts.size());
  double t_first = 0, t_end = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  rt->run_with_client([&](DpEngine& eng) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (auto& p : prompts) {
      Request r;
      r.input_ids = p;
      r.params = sp;
      streams.push_back(eng.enqueue(std::move(r)));
    }
    const bool stream_text = !a.json && prompts.size() == 1;
    Streamer st(stream_text ? tok.get() : nullptr, prompts[0].back());
    for (size_t i = 0; i < streams.size(); ++i) {
      Response resp;
      while (true) {
        if (!streams[i]->next(resp, std::chrono::milliseconds(1000))) continue;
        for (auto& t : resp.tokens) {
          if (outs[i].ids.empty() && i == 0) t_first = secs();
          outs[i].ids.push_back(t.token);
          if (stream_text) {
            std::string piece = st.push(t.token);
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
          }
        }
        if (resp.finished) {
          outs[i].finish_reason = resp.finish_reason;
          outs[i].error = resp.error;
          break;
        }
      }
    }
    if (stream_text) {
      std::string tail = st.flush();
      std::fwrite(tail.data(), 1, tail.size(), stdout);
      std::fflush(stdout);
    }
    t_end = secs();
  });


  auto decode_text = [&](size_t i) -> std::string {
    if (!tok) return "";
    Streamer d(tok.get(), prompts[i].back());
    std::string s;
    for (auto id : outs[i].ids) s += d.push(id);
    return s + d.flush();
  };
  int64_t prompt_tokens = 0, out_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompt_tokens += int64_t(prompts[i].size());
    out_tokens += int64_t(outs[i].ids.size());
    if (outs[i].finish_reason == "error") fail("prompt {}: {}", i + 1, outs[i].error);
  }
  if (a.json) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      nlohmann::json j;
      j["prompt_ids"] = prompts[i];
      j["output_ids"] = outs[i].ids;
      j["text"] = decode_text(i);
      j["finish_reason"] = outs[i].finish_reason;
      j["prompt_tokens"] = prompts[i].size();
      j["completion_tokens"] = outs[i].ids.size();
      j["time_to_first_token_s"] = t_first;
      j["total_seconds"] = t_end;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  } else if (prompts.size() > 1) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::string t = decode_text(i);
      for (auto& ch : t)
        if (ch == '\n') ch = ' ';
      std::cout << t << "\n";
    }
  }
  std::cout.flush();
  const double decode_s = t_end - t_first;
  const int64_t decode_tokens = out_tokens - int64_t(prompts.size());
  std::fprintf(stderr, "\nprompt: %lld tokens, first token after %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.1f tok/s)\n",
               (long long)prompt_tokens, t_first, t_first > 0 ? double(prompt_tokens) / t_first : 0.0,
               (long long)decode_tokens, decode_s, decode_s > 0 ? double(decode_tokens) / decode_s : 0.0);
  const WorkerCounters& wc = rt->counters();
  std::fprintf(stderr,
               "steps=%lld control_broadcasts=%lld control_bytes=%lld max_new_requests_in_a_step=%lld "
               "control_seconds=%.4f step_seconds=%.4f\n",
               (long long)wc.steps, (long long)wc.control_broadcasts, (long long)wc.control_bytes,
               (long long)wc.max_new_requests, wc.control_seconds, wc.busy_seconds);
}

// --dump-logits: every position's logits, straight from the single-rank runner.
void run_dump_logits(GenerateArgs& a) {
  ModelLocation loc = resolve_model(a.rf.rt.model_path, a.rf.tokenizer_path);
  LoadOptions lo;
  lo.threads = a.rf.rt.threads;
  auto model = Model::load(loc.model, lo);
  const auto& cfg = model->config();
  std::vector<int32_t> prompt;
  if (!a.prompt_ids.empty()) {
    prompt = parse_ids(a.prompt_ids);
  } else {
    std::unique_ptr<Tokenizer> tok = Tokenizer::load(loc.tokenizer);
    prompt = tok->encode(a.prompt, false);
    if (!a.no_bos && tok->bos_id() >= 0) prompt.insert(prompt.begin(), tok->bos_id());
  }
  for (int32_t id : prompt)
    if (id < 0 || id >= cfg.vocab) fail("prompt token id {} is outside the vocabulary [0, {})", id, cfg.vocab);
  SamplingParams sp;
  sp.temperature = a.temperature;
  sp.max_new_tokens = a.max_new_tokens;
  sp.ignore_eos = a.ignore_eos;
  if (a.seed >= 0) sp.seed = uint64_t(a.seed);
  RunnerOptions ro;
  ro.page_size = a.rf.rt.page_size;
  ro.keep_logits = true;
  std::FILE* dump = std::fopen(a.dump_logits.c_str(), "wb");
  if (!dump) fail("--dump-logits: cannot write {}", a.dump_logits);
  OfflineRunner runner(*model, cfg.eos_ids, ro);
  auto res = runner.run({GenRequest{prompt, sp}}, {},
                        [&](size_t, int64_t, const float* l) { std::fwrite(l, sizeof(float), size_t(cfg.vocab), dump); });
  std::fclose(dump);
  nlohmann::json j;
  j["prompt_ids"] = prompt;
  j["output_ids"] = res[0].output;
  j["finish_reason"] = res[0].finish_reason;
  if (a.json) std::cout << j.dump() << "\n";
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* g = app.add_subcommand("generate", "Generate text offline from one or more prompts (no HTTP server)");
  add_runtime_flags(g, a->rf);
  g->add_option("--prompt", a->prompt, "Prompt text (BOS is prepended when the model has one)");
  g->add_option("--prompt-ids", a->prompt_ids, "Prompt as comma-separated token ids, e.g. 1,5,9 (used as given)");
  g->add_option("--prompts-file", a->prompts_file,
                "File with one prompt per line, run together and spread over DP groups; one output line each");
  g->add_flag("--prompts-are-ids", a->prompts_are_ids, "Each line of --prompts-file is comma-separated token ids");
  g->add_option("--max-new-tokens,-n", a->max_new_tokens, "Tokens to generate per prompt")->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  g->add_option("--temperature,-t", a->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  g->add_option("--top-k", a->top_k, "Keep the k most likely tokens (-1 = off)")->capture_default_str();
  g->add_option("--top-p", a->top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  g->add_option("--min-p", a->min_p, "Drop tokens below min_p x the top probability (0 = off)")->capture_default_str();
  g->add_option("--repetition-penalty", a->repetition_penalty, "Penalty for tokens already seen (1 = off)")
      ->capture_default_str();
  g->add_option("--frequency-penalty", a->frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  g->add_option("--presence-penalty", a->presence_penalty, "OpenAI presence penalty")->capture_default_str();
  g->add_option("--seed", a->seed, "Seed for reproducible sampling (-1 = per-request default)")->capture_default_str();
  g->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-sequence tokens");
  g->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to a text prompt");
  g->add_flag("--json", a->json,
              "Print one JSON object per prompt on stdout: prompt_ids, output_ids, text, finish_reason, timings");
  g->add_option("--dump-logits", a->dump_logits,
                "Write float32 logits, row-major [positions, vocab]: one row per prompt position, then one per "
                "decode step (prompt_len + new_tokens - 1 rows); single prompt, single rank");
  g->callback([a] {
    if (!a->dump_logits.empty()) {
      if (!a->prompts_file.empty()) fail("--dump-logits works with a single prompt");
      run_dump_logits(*a);
    } else {
      run_generate(*a);
    }
  });
}

}  // namespace dpserve::app
