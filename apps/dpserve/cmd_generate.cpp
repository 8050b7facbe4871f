// `dpserve generate`: offline generation from one prompt (or a file of prompts), streamed to stdout.
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "core/check.h"
#include "core/cpu.h"
#include "engine/offline_runner.h"
#include "model/default_model.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::app {

namespace {

struct GenerateArgs {
  std::string model_path, tokenizer_path, prompt, prompt_ids, prompts_file, dump_logits;
  int64_t max_new_tokens = 256;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f;
  float repetition_penalty = 1.0f, frequency_penalty = 0.0f, presence_penalty = 0.0f;
  int32_t top_k = -1;
  int64_t seed = -1;
  int threads = 0;
  bool ignore_eos = false, json = false, no_bos = false;
  int64_t page_size = 16;
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

void run_generate(const GenerateArgs& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  ModelLocation loc = resolve_model(a.model_path, a.tokenizer_path);
  spdlog::info("{}", loc.why);
  auto model = Model::load(loc.model);
  const auto& cfg = model->config();
  std::unique_ptr<Tokenizer> tok;
  if (!loc.tokenizer.empty()) tok = Tokenizer::load(loc.tokenizer);
  spdlog::info("model: {} layers, hidden {}, {} heads / {} KV heads, vocab {}, {} weights, kernels {}, {} threads",
               cfg.n_layers, cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.vocab, dtype_name(cfg.dtype),
               cpu_kernel_name(), omp_get_max_threads());

  int32_t bos = tok ? tok->bos_id() : cfg.bos_id;
  std::vector<int32_t> eos = tok ? tok->eos_ids() : cfg.eos_ids;
  if (!cfg.eos_ids.empty()) eos.insert(eos.end(), cfg.eos_ids.begin(), cfg.eos_ids.end());

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
    for (std::string line; std::getline(in, line);) prompts.push_back(make_prompt(line));
    if (prompts.empty()) fail("--prompts-file: {} has no prompts", a.prompts_file);
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

  std::vector<GenRequest> reqs;
  for (auto& p : prompts) reqs.push_back(GenRequest{p, sp});

  RunnerOptions ro;
  ro.page_size = a.page_size;
  ro.keep_logits = !a.dump_logits.empty();
  std::FILE* dump = nullptr;
  if (!a.dump_logits.empty()) {
    if (reqs.size() != 1) fail("--dump-logits works with a single prompt");
    dump = std::fopen(a.dump_logits.c_str(), "wb");
    if (!dump) fail("--dump-logits: cannot write {}", a.dump_logits);
  }
  OfflineRunner runner(*model, eos, ro);

  // Stream text of a single prompt as it comes; several prompts print at the end in order.
  const bool stream = !a.json && reqs.size() == 1 && tok;
  std::unique_ptr<IncrementalDecoder> dec;
  if (stream) {
    dec = std::make_unique<IncrementalDecoder>(*tok, true);
    dec->push(reqs[0].prompt.back());  // context for the first piece (e.g. no leading space after BOS)
  }
  auto on_token = [&](size_t, int32_t id) {
    if (!stream) return;
    std::string piece = dec->push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  auto on_logits = [&](size_t, int64_t, const float* l) {
    if (dump) std::fwrite(l, sizeof(float), size_t(cfg.vocab), dump);
  };
  auto results = runner.run(reqs, on_token, on_logits);
  if (dump) std::fclose(dump);
  if (stream) {
    std::string tail = dec->flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fflush(stdout);
  }

  const auto& st = runner.stats();
  auto decode_text = [&](const GenRequest& r, const GenResult& res) -> std::string {
    if (!tok) return "";
    IncrementalDecoder d(*tok, true);
    d.push(r.prompt.back());
    std::string s;
    for (auto id : res.output) s += d.push(id);
    return s + d.flush();
  };
  if (a.json) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      nlohmann::json j;
      j["prompt_ids"] = reqs[i].prompt;
      j["output_ids"] = results[i].output;
      j["text"] = decode_text(reqs[i], results[i]);
      j["finish_reason"] = results[i].finish_reason;
      j["prompt_tokens"] = reqs[i].prompt.size();
      j["completion_tokens"] = results[i].output.size();
      j["prefill_seconds"] = st.prefill_seconds;
      j["decode_seconds"] = st.decode_seconds;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  } else if (!stream) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      std::string t = decode_text(reqs[i], results[i]);
      for (auto& ch : t)
        if (ch == '\n') ch = ' ';
      std::cout << t << "\n";
    }
  }
  std::cout.flush();
  const int64_t decode_tokens = st.output_tokens - int64_t(reqs.size());
  std::fprintf(stderr, "\nprompt: %lld tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.1f tok/s)\n",
               (long long)st.prompt_tokens, st.prefill_seconds,
               st.prefill_seconds > 0 ? double(st.prompt_tokens) / st.prefill_seconds : 0.0,
               (long long)decode_tokens, st.decode_seconds,
               st.decode_seconds > 0 ? double(decode_tokens) / st.decode_seconds : 0.0);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* g = app.add_subcommand("generate", "Generate text offline from a prompt (no server)");
  g->add_option("--model-path", a->model_path,
                "Hugging Face model folder or llama2.c checkpoint (.bin). Default: the bundled stories260K")
      ->envname("DPSERVE_MODEL_PATH");
  g->add_option("--tokenizer-path", a->tokenizer_path,
                "Tokenizer folder or file. Default: the model folder, or the tok*.bin beside a llama2.c checkpoint");
  g->add_option("--prompt", a->prompt, "Prompt text (BOS is prepended when the model has one)");
  g->add_option("--prompt-ids", a->prompt_ids, "Prompt as comma-separated token ids, e.g. 1,5,9 (used as given)");
  g->add_option("--prompts-file", a->prompts_file, "File with one prompt per line, generated together as a batch");
  g->add_option("--max-new-tokens,-n", a->max_new_tokens, "Tokens to generate")->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  g->add_option("--temperature,-t", a->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  g->add_option("--top-k", a->top_k, "Keep the k most likely tokens (-1 = off)")->capture_default_str();
  g->add_option("--top-p", a->top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  g->add_option("--min-p", a->min_p, "Drop tokens below min_p x the top probability (0 = off)")->capture_default_str();
  g->add_option("--repetition-penalty", a->repetition_penalty, "Penalty for tokens already seen (1 = off)")
      ->capture_default_str();
  g->add_option("--frequency-penalty", a->frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  g->add_option("--presence-penalty", a->presence_penalty, "OpenAI presence penalty")->capture_default_str();
  g->add_option("--seed", a->seed, "Seed for reproducible sampling (-1 = per-prompt default)")->capture_default_str();
  g->add_option("--threads", a->threads, "OpenMP threads (0 = all cores)")->capture_default_str()
      ->envname("DPSERVE_THREADS");
  g->add_option("--page-size", a->page_size, "KV cache page size in positions")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  g->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-sequence tokens");
  g->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to a text prompt");
  g->add_flag("--json", a->json,
              "Print one JSON object per prompt on stdout: prompt_ids, output_ids, text, finish_reason, timings");
  g->add_option("--dump-logits", a->dump_logits,
                "Write float32 logits, row-major [positions, vocab]: one row per prompt position, then one per "
                "decode step (prompt_len + new_tokens - 1 rows); single prompt only");
  g->callback([a] { run_generate(*a); });
}

}  // namespace dpserve::app
