// `dpserve serve`: the OpenAI-compatible HTTP server. Rank 0 runs the frontend in
// background threads and the step loop on its main thread; other ranks run the step loop.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/dpserve/commands.h"
#include "apps/dpserve/launch.h"
#include "apps/dpserve/launcher_note.h"
#include "apps/dpserve/runtime_flags.h"
#include "apps/dpserve/sglang_refused_flags.h"
#include "core/check.h"
#include "kernels/isa.h"
#include "core/version.h"
#include "engine/runtime.h"
#include "engine/scheduler.h"
#include "model/default_model.h"
#include "parallel/comm.h"
#include "server/chat_output.h"
#include "server/http_server.h"
#include "server/lora_adapters.h"
#include "tokenizer/ids_only_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "vision/image_input.h"

namespace dpserve::app {

namespace {

// Hugging Face's model_type ("qwen3"), as SGLang's /model_info reports it: config.json's, when the
// model is a folder that has one; else the architecture name.
std::string hf_model_type(const std::string& model_path, const std::string& arch_name) {
  std::ifstream in(std::filesystem::path(model_path) / "config.json");
  if (!in) return arch_name;
  const nlohmann::json c = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return c.is_object() && c.contains("model_type") && c["model_type"].is_string() ? c["model_type"].get<std::string>()
                                                                                     : arch_name;
}

struct ServeArgs {
  RuntimeFlags rf;
  ServerOptions so;
  std::string log_level = "info";
  bool enable_metrics = false;  // accepted; metrics are always on
  bool is_embedding = false;
  std::string sampling_defaults = "model";
  std::string preferred_sampling_params;  // JSON, checked before the model loads
  std::string pooling = "auto";
  std::string normalize_embeddings = "auto";
  std::vector<std::string> lora_paths;  // --lora-paths, as given (server/lora_adapters.h reads them)
  std::string reasoning_parser;  // --reasoning-parser as given (flag or environment), "none" included
  std::string tool_call_parser;  // --tool-call-parser likewise
};

// What this node's launcher wrote before its SIGUSR1 (node_control.h).
std::string node_loss_reason() {
  std::string why = "a node of the --nnodes job is lost";
  if (const char* f = std::getenv("DPSERVE_NODE_EVENT_FILE")) {
    std::ifstream in(f);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) why = line;
  }
  return why;
}

// An empty key (`--api-key "$KEY"` with KEY unset, or a stray comma) would leave the server open
// while its operator believes it locked: refused, as is a set but empty environment variable.
void check_api_keys(const ServeArgs& a) {
  for (const auto& k : a.so.api_keys)
    if (k.empty()) fail("--api-key: an empty key (an unset shell variable, or a stray comma?) would open the server");
  for (const char* var : {"DPSERVE_API_KEY", "DPSERVE_ADMIN_API_KEY"}) {
    const char* v = std::getenv(var);
    if (v && !*v && (std::string(var) == "DPSERVE_API_KEY" ? a.so.api_keys.empty() : a.so.admin_api_key.empty()))
      fail("{} is set but empty: set a key or unset the variable", var);
  }
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Rank 0 of several, once a drain began: `after` seconds later (--shutdown-timeout + grace), a step
// loop that has not taken the shutdown step and whose last step ended longer ago than the grace is
// stuck in a step waiting for a rank (stopped, or stuck in a collective: with --watchdog-timeout 0 it
// would wait forever), so the job is ended, naming why; so is a process still alive kDrainGraceSeconds
// after its loop ended (MPI_Finalize waiting for such a rank). Slow steps that still end, and a loop
// that took the shutdown step and is writing its --kv-cache-dir file, are left to finish.
void start_drain_guard(Runtime& rt, DpEngine& engine, std::shared_ptr<std::atomic<bool>> loop_done, double after) {
  std::thread([&rt, &engine, loop_done, after] {
    std::this_thread::sleep_for(std::chrono::duration<double>(after));
    double done_since = 0;
    while (true) {
      // rt and engine are only touched while the loop runs (they outlive it).
      if (!*loop_done && !engine.shutdown_sent() && engine.seconds_since_step() > kDrainGraceSeconds + 2)
        rt.stop_job(fmt::format("the drain has not ended {:.0f} s after the signal (--shutdown-timeout + {:.0f} s): "
                                "the step loop still waits for a rank that is stopped or stuck in a collective (the "
                                "dpserve launcher names a stopped one)",
                                after, kDrainGraceSeconds + 2),
                    "drain");
      if (*loop_done && done_since == 0) done_since = steady_seconds();
      if (done_since > 0 && steady_seconds() - done_since > kDrainGraceSeconds) {
        std::fprintf(stderr, "rank 0: drain: the step loop ended %.0f s ago but the process still waits (MPI_Finalize "
                             "waits for a rank that is stopped or stuck). Stopping the job.\n",
                     kDrainGraceSeconds);
        std::fflush(stderr);
        std::_Exit(3);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }).detach();
}

void run_serve(ServeArgs& a) {
  spdlog::set_level(spdlog::level::from_str(a.log_level));
  check_api_keys(a);
  if (!a.preferred_sampling_params.empty()) {
    if (a.is_embedding) fail("--preferred-sampling-params applies to generation; an --is-embedding server samples nothing");
    a.so.preferred_sampling = SamplingDefaults::from_preferred(a.preferred_sampling_params);
  }
  check_node_flags(a.rf.rt.nodes, requested_world(a.rf));
  if (a.rf.rt.nodes.nnodes > 1)
    relaunch_node_job(a.rf.rt.nodes, requested_world(a.rf), a.rf.rt.watchdog_timeout, a.so.shutdown_timeout_s, a.rf.numa,
                      a.rf.rt.threads);
  else
    relaunch_under_mpirun_if_needed(requested_world(a.rf), a.rf.rt.watchdog_timeout, a.rf.numa, a.rf.rt.threads,
                                    a.so.shutdown_timeout_s);

  // Signals are handled by one thread (rank 0) or ignored (other ranks: rank 0's shutdown
  // broadcast stops them), so block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR2);
  // --nnodes: this node's launcher sends SIGUSR1 when another node is lost (node_control.h).
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  ModelLocation loc = resolve_model(a.rf.rt.model_path, a.rf.tokenizer_path);
  a.rf.rt.model_path = loc.model;
  a.rf.rt.sched.enable_prefix_cache = !a.rf.disable_radix_cache;
  // Every rank reads the same small files, so a bad folder stops them all alike, before any collective.
  if (a.is_embedding) {
    a.so.embedding = load_embedding_config(loc.model, a.pooling, a.normalize_embeddings);
  } else if (a.pooling != "auto" || a.normalize_embeddings != "auto") {
    fail("{} applies to embedding models only: add --is-embedding", a.pooling != "auto" ? "--pooling" : "--normalize-embeddings");
  }
  std::unique_ptr<Tokenizer> tok;
  if (a.so.skip_tokenizer_init) {
    // No vocabulary: EOS comes from the model's config (the runtime adds it), the stand-in is made below.
    if (!a.rf.tokenizer_path.empty()) fail("--skip-tokenizer-init loads no tokenizer: drop --tokenizer-path");
    loc.tokenizer.clear();
  } else {
    if (loc.tokenizer.empty()) fail("no tokenizer found for {}: give --tokenizer-path (or --skip-tokenizer-init)", loc.model);
    try {
      tok = Tokenizer::load(loc.tokenizer);
    } catch (const Error& e) {
      fail("{} (give --tokenizer-path, or serve token ids alone with --skip-tokenizer-init)", e.what());
    }
    a.rf.rt.eos_ids = tok->eos_ids();
    a.rf.rt.tokenizer = tok.get();
  }

  if (a.so.served_model_name.empty()) {
    std::string p = loc.model;
    while (!p.empty() && p.back() == '/') p.pop_back();
    a.so.served_model_name = p.substr(p.find_last_of('/') + 1);
  }
  // Every rank reads the same flags, so every rank loads the same adapters in the same order.
  a.so.lora_adapters = parse_lora_paths(a.lora_paths, a.so.served_model_name);
  a.so.priority_scheduling = a.rf.rt.sched.priority_scheduling;
  a.so.low_priority_values_first = a.rf.rt.sched.low_priority_values_first;
  for (const LoraAdapterPath& l : a.so.lora_adapters) {
    a.rf.rt.lora_dirs.push_back(l.path);
    a.rf.rt.lora_names.push_back(l.name);
  }

  // The vision tower's runs on rank 0, for /metrics and the request log (server/image_timing.h).
  auto encoder_times = std::make_shared<EncoderTimes>();
  a.rf.rt.image_tap = [encoder_times](uint64_t id, int64_t images, double seconds) {
    encoder_times->record(id, images, seconds);
  };
  auto rt = Runtime::start(a.rf.rt);
  // Past this point the other ranks wait in the step loop for rank 0: an error of rank 0's here (its
  // --port in use, a bad file) must end the job with its message. Left to unwind, it would reach
  // MPI_Finalize, which waits for ranks that never get there: the job hung, silent, until killed.
  auto serve = [&] {
    DpEngine* engine = rt->engine();
    if (!engine) {
      // A lost node (SIGUSR1 from this node's launcher): nothing to drain here, end with the reason.
      // SIGTERM / SIGINT stay ignored (only rank 0 can drain; its shutdown step stops this rank), but
      // one sent by someone else than mpirun (which sends SIGTERM when it ends the job) is said once, so
      // whoever sent it learns where to send it instead.
      std::thread([&rt] {
        sigset_t wait;
        sigemptyset(&wait);
        sigaddset(&wait, SIGUSR1);
        sigaddset(&wait, SIGTERM);
        sigaddset(&wait, SIGINT);
        bool said = false;
        while (true) {
          siginfo_t si;
          const int s = sigwaitinfo(&wait, &si);
          if (s == SIGUSR1) rt->stop_job(node_loss_reason());
          if ((s == SIGTERM || s == SIGINT) && !said && si.si_pid != getppid()) {
            said = true;
            spdlog::warn("rank {}: signal {} ignored: only rank 0 drains and stops the job; send SIGTERM to the "
                         "dpserve launcher (the process you started) or to rank 0, or SIGUSR2 to mpirun",
                         rt->rank(), s);
          }
        }
      }).detach();
      rt->run();
      return;
    }
    const ModelConfig& cfg = rt->model_config();
    if (!tok) {
      tok = make_ids_only_tokenizer(cfg.vocab, cfg.bos_id, cfg.eos_ids);
      spdlog::info("--skip-tokenizer-init: no tokenizer; requests take input_ids (/generate), outputs are ids (EOS {})",
                   fmt::join(cfg.eos_ids, ","));
    }
    spdlog::info("{}", loc.why);
    spdlog::info("model: {} ({} layers, hidden {}, {} heads / {} KV heads, vocab {}, context {}), kernels {}",
                 cfg.arch_name, cfg.n_layers, cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.vocab, cfg.max_pos,
                 kernels::kernels_description());
    spdlog::info("{}", rt->describe());
    // gpt-oss writes only the harmony format: without its reader the channels' names run into the answer.
    // So, as vLLM serves gpt-oss, the reader is on unless the flag says otherwise.
    if (cfg.arch == Arch::GptOss && a.reasoning_parser.empty() && !a.so.skip_tokenizer_init &&
        missing_harmony_tag(*tok).empty()) {
      a.so.reasoning_parser = ReasoningParser::kGptOss;
      a.reasoning_parser = "gpt-oss";
      if (a.tool_call_parser.empty()) {
        a.so.tool_call_parser = ToolCallParser::kGptOss;
        a.tool_call_parser = "gpt-oss";
      }
      spdlog::info("gpt-oss: reading its harmony format into reasoning_content, content{} (--reasoning-parser gpt-oss{}; "
                   "--reasoning-parser none turns it off)",
                   a.so.tool_call_parser == ToolCallParser::kGptOss ? " and tool_calls" : "",
                   a.so.tool_call_parser == ToolCallParser::kGptOss ? " --tool-call-parser gpt-oss" : "");
    }
    for (size_t i = 0; i < a.so.lora_adapters.size(); ++i)
      spdlog::info("LoRA adapter {} '{}' from {}", i, a.so.lora_adapters[i].name, a.so.lora_adapters[i].path);

    if (a.sampling_defaults == "model") {
      std::vector<std::string> warnings;
      a.so.sampling_defaults = SamplingDefaults::load(loc.model, warnings);
      for (const auto& w : warnings) spdlog::warn("--sampling-defaults model: {}", w);
      if (!a.so.sampling_defaults.empty())
        spdlog::info("sampling defaults from the model (requests' own values win; --sampling-defaults openai: "
                     "OpenAI's): {}", a.so.sampling_defaults.to_json().dump());
    }
    if (!a.so.preferred_sampling.empty())
      spdlog::info("--preferred-sampling-params (over the model's defaults and SGLang's; requests' own values win): {}",
                   a.so.preferred_sampling.to_json().dump());
    if (a.is_embedding)
      spdlog::info("--is-embedding: /v1/embeddings serves pooled hidden states ({}); generation routes are refused",
                   a.so.embedding.source);
    // Images: read on rank 0 only, where requests are parsed and images materialized.
    a.so.images.tokens = VisionTokenIds::load(loc.model);
    if (a.so.images.tokens.takes_images()) {
      a.so.images.preprocess = ImagePreprocessConfig::load(loc.model);
      spdlog::info("images: image_pad token {}, patch {} x merge {}, {}..{} pixels", a.so.images.tokens.image_pad,
                   a.so.images.preprocess.patch_size, a.so.images.preprocess.merge_size,
                   a.so.images.preprocess.min_pixels, a.so.images.preprocess.max_pixels);
    }
    nlohmann::json info = {{"model_path", loc.model},
                           {"tokenizer_path", loc.tokenizer},
                           {"served_model_name", a.so.served_model_name},
                           {"architecture", cfg.arch_name},
                           {"hidden_size", cfg.hidden},
                           {"vocab_size", cfg.vocab},
                           {"context_length", cfg.max_pos},
                           {"tp_size", a.rf.rt.tp_size},
                           {"dp_size", a.rf.rt.dp_size},
                           {"enable_dp_attention", a.rf.rt.enable_dp_attention},
                           {"ep_size", a.rf.rt.ep_size},
                           {"load_balance_method", to_string(a.rf.rt.load_balance_method)},
                           {"dp_padding_mode", to_string(a.rf.rt.dp_padding_mode)},
                           {"world_size", rt->world_size()},
                           {"page_size", a.rf.rt.page_size},
                           {"max_running_requests", a.rf.rt.sched.max_running_requests},
                           {"chunked_prefill_size", a.rf.rt.sched.chunked_prefill_size},
                           {"schedule_policy", schedule_policy_name(a.rf.rt.sched.policy)},
                           {"enable_priority_scheduling", a.rf.rt.sched.priority_scheduling},
                           {"schedule_low_priority_values_first", a.rf.rt.sched.low_priority_values_first},
                           {"priority_scheduling_preemption_threshold", a.rf.rt.sched.priority_preemption_threshold},
                           {"disable_priority_preemption", !a.rf.rt.sched.priority_preemption},
                           {"skip_tokenizer_init", a.so.skip_tokenizer_init},
                           {"is_embedding", a.is_embedding},
                           {"sampling_defaults", a.sampling_defaults},
                           {"default_sampling_params", a.so.sampling_defaults.to_json()},
                           {"preferred_sampling_params", a.so.preferred_sampling.empty()
                                                             ? nlohmann::json(nullptr)
                                                             : a.so.preferred_sampling.to_json()},
                           {"max_total_tokens", rt->kv_tokens_per_rank()},
                           {"max_total_num_tokens", rt->kv_tokens_per_rank()},  // SGLang's name
                           {"weight_bytes", rt->model().weight_bytes()},  // rank 0's weights as run
                           {"model_type", hf_model_type(loc.model, cfg.arch_name)},
                           {"has_image_understanding", a.so.images.tokens.takes_images()},
                           {"kernels", kernels::kernels_description()},
                           // SGLang's server args (null: none), as in effect (gpt-oss gets its own by default).
                           {"reasoning_parser", a.reasoning_parser.empty() || a.reasoning_parser == "none"
                                                    ? nlohmann::json() : nlohmann::json(a.reasoning_parser)},
                           {"tool_call_parser", a.tool_call_parser.empty() || a.tool_call_parser == "none"
                                                    ? nlohmann::json() : nlohmann::json(a.tool_call_parser)},
                           {"version", dpserve_version()}};
    // SGLang's server-args names for speculative decoding (null: off).
    const SpeculativeConfig& spec = a.rf.rt.sched.spec;
    info["speculative_algorithm"] = spec.enabled() ? nlohmann::json(to_string(spec.algorithm)) : nlohmann::json();
    if (spec.enabled()) {
      info["speculative_num_steps"] = spec.max_draft;
      info["speculative_num_draft_tokens"] = spec.max_draft + 1;
      info["speculative_eagle_topk"] = spec.topk;
      info["speculative_max_step_rows"] = spec.max_step_rows;
      info["speculative_draft_model_path"] =
          spec.draft_model_path.empty() ? nlohmann::json() : nlohmann::json(spec.draft_model_path);
    }
    HttpServer server(a.so, *engine, *tok, info);
    server.set_encoder_times(encoder_times);
    server.start();

    // The signal thread keeps reading signals while a drain runs: a launcher's note (a rank it is about
    // to kill) or a lost node must still end open requests as engine faults then.
    auto loop_done = std::make_shared<std::atomic<bool>>(false);
    std::thread drainer;
    std::thread sig_thread([&] {
      bool draining = false;
      while (!*loop_done) {
        timespec ts{0, 200 * 1000 * 1000};
        siginfo_t si;
        int s = sigtimedwait(&sigs, &si, &ts);
        if (s == SIGUSR1) {
          // The launcher is about to kill a stopped rank, or another node is gone: no step can finish.
          // End open streams with the reason (an error event, 5xx for waiting requests) and stop the
          // job, as the watchdog would, but now.
          const std::string note = read_launcher_note(si);
          if (!note.empty()) rt->stop_job(note, "the dpserve launcher");
          rt->stop_job(node_loss_reason());
        }
        if ((s == SIGTERM || s == SIGINT) && si.si_pid == getppid() && launched_under_mpi())
          // mpirun sends SIGTERM when it was itself signalled (the dpserve launcher forwards SIGUSR2
          // instead), or when it ends the job after a rank failed; it kills every rank soon after.
          spdlog::warn("signal {} came from mpirun (pid {}): mpirun was signalled itself, or a rank failed (then "
                       "mpirun names it); either way mpirun kills every rank shortly, whether or not the drain is "
                       "done. To drain, signal the dpserve launcher (the process you started) or send SIGUSR2 to mpirun",
                       s, int(si.si_pid));
        if ((s == SIGTERM || s == SIGINT || s == SIGUSR2) && !draining) {
          spdlog::info("received signal {}: draining (up to {:g} s), then stopping every rank", s,
                       a.so.shutdown_timeout_s);
          server.begin_drain();
          draining = true;
          const auto drain = std::chrono::milliseconds(int64_t(a.so.shutdown_timeout_s * 1000));
          drainer = std::thread([engine, drain] { engine->shutdown(drain); });
          // A drain that cannot end (a rank stopped or stuck: the step loop waits in a collective for
          // it, with --watchdog-timeout 0 forever) is ended by the guard.
          if (rt->world_size() > 1)
            start_drain_guard(*rt, *engine, loop_done, a.so.shutdown_timeout_s + kDrainGraceSeconds + 2);
        }
      }
    });
    rt->run();
    *loop_done = true;
    sig_thread.join();
    if (drainer.joinable()) drainer.join();
    server.stop();
    spdlog::info("stopped");
  };
  try {
    serve();
  } catch (const std::exception& e) {
    if (rt->engine() && rt->world_size() > 1) abort_job(e.what());  // rank 0: the others wait on it
    throw;
  }
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* s = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API");
  add_runtime_flags(s, a->rf);
  add_sglang_refused_flags(s);
  s->add_option("--host", a->so.host, "Address to listen on")->capture_default_str()->envname("DPSERVE_HOST");
  s->add_option("--port", a->so.port, "Port to listen on (0 = any free port)")
      ->capture_default_str()->check(CLI::Range(0, 65535))->envname("DPSERVE_PORT");
  s->add_option("--api-key", a->so.api_keys,
                "Require 'Authorization: Bearer KEY' on every request but /health, /health_generate, /metrics and the "
                "web page's static shell at / (it asks for the key and sends it on its API calls); "
                "several keys (repeat the flag, or comma-separate) let several clients in, each aborting only its "
                "own requests. With several ranks the keys reach them through the environment, never their "
                "command lines; set DPSERVE_API_KEY instead of the flag to keep them off this one too")
      ->delimiter(',')->envname("DPSERVE_API_KEY");
  s->add_option("--admin-api-key", a->so.admin_api_key,
                "A key that passes everywhere and may abort any request; /abort_request {\"abort_all\": true} and the "
                "operator routes (/flush_cache) need it once it is set (a tenant's --api-key then gets 403)")
      ->envname("DPSERVE_ADMIN_API_KEY");
  s->get_option("--admin-api-key")->each([a](const std::string& v) {
    if (v.empty()) fail("--admin-api-key: an empty key (an unset shell variable?) would leave the operator routes open");
  });
  s->add_option("--served-model-name", a->so.served_model_name,
                "Model name in the API (default: the model folder's name)")
      ->envname("DPSERVE_SERVED_MODEL_NAME")
      ->check([](const std::string& v) { return v.empty() ? std::string("an empty model name") : std::string(); });
  s->add_option("--lora-paths", a->lora_paths,
                "LoRA (PEFT) adapters to serve on top of the model, each NAME=PATH, a bare PATH (named after its "
                "folder) or SGLang's JSON {\"lora_name\": NAME, \"lora_path\": PATH}; a request selects one with "
                "'model': NAME (or 'SERVED_MODEL:NAME') or 'lora_path': NAME, and requests of different adapters "
                "and of the base model share a batch")
      ->expected(1, -1)
      ->envname("DPSERVE_LORA_PATHS");
  s->add_flag("--enable-lora", a->so.enable_lora,
              "Allow loading and unloading LoRA adapters while the server runs: POST /load_lora_adapter "
              "{lora_name, lora_path} and /unload_lora_adapter {lora_name} (SGLang), /v1/load_lora_adapter and "
              "/v1/unload_lora_adapter (vLLM). They read folders on the server's disk, so they are off by default "
              "(without this flag they answer 400); --lora-paths adapters are served either way")
      ->envname("DPSERVE_ENABLE_LORA");
  s->add_flag("--return-tokens-as-token-ids", a->so.return_tokens_as_token_ids,
              "Name tokens \"token_id:<id>\" in the logprobs of /v1/completions and /v1/chat/completions (vLLM's "
              "flag, for clients that map logprobs back to token ids); a request's 'return_tokens_as_token_ids' "
              "overrides it")
      ->envname("DPSERVE_RETURN_TOKENS_AS_TOKEN_IDS");
  s->add_flag("--trust-request-chat-template", a->so.trust_request_chat_template,
              "Let chat requests (and /tokenize) bring their own Jinja 'chat_template' (vLLM's flag); off, such a "
              "request is a 400. The renderer bounds a template's steps, output and depth either way")
      ->envname("DPSERVE_TRUST_REQUEST_CHAT_TEMPLATE");
  s->add_option("--chat-template", a->so.chat_template_path,
                "Jinja chat template file (for models whose tokenizer_config.json has none)")
      ->envname("DPSERVE_CHAT_TEMPLATE");
  s->add_option("--completion-template", a->so.completion_template,
                "Fill-in-the-middle format of completions' 'suffix' (SGLang's names): qwen_coder "
                "(<|fim_prefix|>...), star_coder (<fim_prefix>...), deepseek_coder (<｜fim▁begin｜>...), or "
                "codestral ([SUFFIX]...[PREFIX]...). Default: the first whose tokens the vocabulary has")
      ->check(CLI::IsMember({"qwen_coder", "star_coder", "deepseek_coder", "codestral"}))
      ->envname("DPSERVE_COMPLETION_TEMPLATE");
  // Range checks read the text as a signed number: "-1" into an unsigned option would wrap to no limit.
  s->add_option("--max-body-bytes", a->so.max_body_bytes, "Largest request body accepted")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 40))->envname("DPSERVE_MAX_BODY_BYTES");
  s->add_option("--max-queued-requests", a->so.max_queued_requests,
                "Sequences (prompts x n, summed over the generation requests in flight) beyond which new requests get "
                "429 with Retry-After; a request that alone needs more gets 400 (0 = no limit)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->envname("DPSERVE_MAX_QUEUED_REQUESTS");
  s->add_option("--max-queued-tokens", a->so.max_queued_tokens,
                "The same bound on tokens: prompt + max_tokens of every sequence in flight, each echoed prompt "
                "logprob alternative (echo + logprobs k: k per prompt token and choice) counted as a token too "
                "(0 = no limit)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->envname("DPSERVE_MAX_QUEUED_TOKENS");
  s->add_option("--max-queued-logprobs", a->so.max_queued_logprobs,
                "The same bound on logprob entries the replies in flight will hold: every reported token (echoed "
                "prompt, generated) and each of its top_logprobs alternatives, for every choice. A reply is built "
                "whole in memory (~250 bytes an entry), so this bounds what logprobs can make the server hold "
                "(0 = no limit)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->envname("DPSERVE_MAX_QUEUED_LOGPROBS");
  s->add_option("--max-queued-embedding-values", a->so.max_queued_embedding_values,
                "The same bound on the floats the /v1/embeddings replies in flight hold (each input's returned "
                "dimensions; kept as float32 until written): new requests get 429 beyond it, a request that alone "
                "needs more gets 400 (0 = no limit)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->envname("DPSERVE_MAX_QUEUED_EMBEDDING_VALUES");
  s->add_option("--max-stored-responses", a->so.max_stored_responses,
                "/v1/responses kept in memory for previous_response_id and GET /v1/responses/{id}; beyond it the "
                "oldest go (0 = keep none). /v1/conversations and chat completions made with store: true are kept "
                "within the same bounds, each apart")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40))
      ->envname("DPSERVE_MAX_STORED_RESPONSES");
  s->add_option_function<size_t>(
       "--max-stored-responses-mb", [a](size_t mb) { a->so.max_stored_response_bytes = mb << 20; },
       "The same bound on their size (MiB of JSON); default 256")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30))->envname("DPSERVE_MAX_STORED_RESPONSES_MB");
  s->add_option("--max-background-responses", a->so.max_background_responses,
                "/v1/responses with background: true, /v1/batches and /v1/messages/batches running at once, each on a "
                "thread of its own "
                "until it ends (queued in the engine or generating); more get 429 (0 = both are refused). Streamed "
                "responses keep their events for GET /v1/responses/{id}?stream=true while they run and as one of the "
                "last N to end")
      ->capture_default_str()
      ->check(CLI::Range(0, 65536))
      ->envname("DPSERVE_MAX_BACKGROUND_RESPONSES");
  s->add_option_function<size_t>(
       "--max-file-store-mb", [a](size_t mb) { a->so.max_file_store_bytes = mb << 20; },
       "MiB of files the Files API keeps in memory (Batch API inputs and outputs, images for /v1/responses, and "
       "uploads in parts while they arrive); an upload or a batch's results beyond it are refused; default 256")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30))->envname("DPSERVE_MAX_FILE_STORE_MB");
  s->add_option("--http-threads", a->so.http_threads,
                "Most HTTP connections served at once (a thread each, started on demand)")
      ->capture_default_str()->check(CLI::Range(4, 4096))->envname("DPSERVE_HTTP_THREADS");
  s->add_option("--http-read-timeout", a->so.http_read_timeout_s,
                "Seconds a client may stay silent while sending a request before its connection is closed")
      ->capture_default_str()->check(CLI::Range(0.001, 1e6))->envname("DPSERVE_HTTP_READ_TIMEOUT");
  s->add_option("--http-request-timeout", a->so.http_request_timeout_s,
                "Seconds a client may take to send a request body after its headers (0 = no limit)")
      ->capture_default_str()->check(CLI::Range(0.0, 1e6))->envname("DPSERVE_HTTP_REQUEST_TIMEOUT");
  s->add_option("--shutdown-timeout", a->so.shutdown_timeout_s,
                "Seconds in-flight requests may take to finish after SIGTERM before they are aborted")
      ->capture_default_str()->check(CLI::Range(0.0, 1e6))->envname("DPSERVE_SHUTDOWN_TIMEOUT");
  s->add_option("--sampling-defaults", a->sampling_defaults,
                "Sampling values for the fields a completions / chat / responses request leaves out: model "
                "(the model's generation_config.json, or a GGUF file's general.sampling.*, over OpenAI's) or "
                "openai (temperature 1, top_p 1, no top_k, min_p or repetition penalty)")
      ->check(CLI::IsMember({"model", "openai"}))->capture_default_str()->envname("DPSERVE_SAMPLING_DEFAULTS");
  s->add_option("--preferred-sampling-params", a->preferred_sampling_params,
                "JSON object of sampling values for the fields a request leaves out, on every generation route "
                "(over the model's defaults on the OpenAI routes): temperature, top_p, top_k, min_p, "
                "repetition_penalty, frequency_penalty, presence_penalty; e.g. '{\"temperature\": 0.6}'")
      ->envname("DPSERVE_PREFERRED_SAMPLING_PARAMS");
  s->add_option_function<std::string>(
       "--tool-call-parser",
       [a](const std::string& v) {
         a->so.tool_call_parser = parse_tool_call_parser(v);
         a->tool_call_parser = v;
       },
       "Format of the model's tool calls, picked out of chat outputs into tool_calls and enforced for "
       "tool_choice required / named: qwen3, qwen25, qwen, hermes (<tool_call> JSON blocks), llama3 (JSON), "
       "deepseekv3 (DeepSeek-V3 / R1: <｜tool▁calls▁begin｜> sections, ```json arguments), deepseekv31 "
       "(DeepSeek-V3.1: the same tags, name<｜tool▁sep｜>arguments), mistral ([TOOL_CALLS] JSON arrays), "
       "qwen3_coder (Qwen3-Coder: <tool_call><function=NAME><parameter=KEY> blocks, values typed by the tool's "
       "schema), glm45 (GLM-4.5 / 4.6: <tool_call>NAME <arg_key>KEY</arg_key> <arg_value>VALUE</arg_value> blocks, "
       "values typed likewise), glm47 (GLM-4.7: the same without line breaks) or gpt-oss (harmony messages to "
       "functions.NAME, one call a turn; needs --reasoning-parser gpt-oss)")
      ->check(CLI::IsMember({"none", "qwen3", "qwen25", "qwen", "hermes", "llama3", "deepseekv3", "deepseekv31",
                             "mistral", "qwen3_coder", "glm45", "glm47", "gpt-oss"}))
      ->envname("DPSERVE_TOOL_CALL_PARSER");
  auto* reasoning_parser = s->add_option_function<std::string>(
       "--reasoning-parser",
       [a](const std::string& v) {
         a->so.reasoning_parser = parse_reasoning_parser(v);
         a->reasoning_parser = v;
       },
       "Move the model's reasoning into reasoning_content: qwen3 (also deepseek-r1 and glm45: the "
       "<think>...</think> block) or gpt-oss (the harmony format: the analysis channel is reasoning, final and commentary "
       "preambles are content). A gpt-oss model gets gpt-oss (and --tool-call-parser gpt-oss) unless this "
       "flag is given; none turns it off")
      ->check(CLI::IsMember({"none", "qwen3", "deepseek-r1", "glm45", "gpt-oss"}))->envname("DPSERVE_REASONING_PARSER");
  s->add_option("--reasoning-budget", a->so.reasoning_budget,
                "Thinking tokens a chat request may write inside its <think> block before the server closes it "
                "(forces </think>, then the answer follows); -1: no cap. A request's thinking_token_budget "
                "(also thinking_budget_tokens, or Anthropic's thinking.budget_tokens) overrides it")
      ->check(CLI::Range(int64_t(-1), int64_t(2147483647)))->capture_default_str()->needs(reasoning_parser)
      ->envname("DPSERVE_REASONING_BUDGET");
  s->add_option("--reasoning-budget-message", a->so.reasoning_budget_message,
                "Text the server writes before the </think> it forces when a thinking budget runs out, e.g. "
                "' Time is up, so I answer now.' (default: none, the block just closes)")
      ->needs(reasoning_parser)->envname("DPSERVE_REASONING_BUDGET_MESSAGE");
  auto* ws = s->add_option("--constrained-json-whitespace-pattern", a->so.json_whitespace,
                           "Regex of the whitespace JSON outputs (response_format, json_schema, tools) may put "
                           "between tokens; only spaces, tabs and line breaks")
                 ->capture_default_str()->envname("DPSERVE_CONSTRAINED_JSON_WHITESPACE_PATTERN");
  s->add_flag_callback("--constrained-json-disable-any-whitespace", [a] { a->so.json_whitespace.clear(); },
                       "Compact JSON outputs: no whitespace between tokens")
      ->excludes(ws);
  s->add_option("--allowed-image-url-prefix", a->so.images.allowed_url_prefixes,
                "Let image inputs name remote http(s) URLs under this prefix (repeatable; a prefix needs a path, e.g. "
                "https://images.example.com/img/). Compared after normalisation: scheme, host, port, and the "
                "%-decoded path with '.'/'..' resolved, on segment boundaries. Without it only data: URLs and "
                "base64 are accepted")
      ->envname("DPSERVE_ALLOWED_IMAGE_URL_PREFIX");
  s->add_option("--image-fetch-timeout", a->so.images.fetch_timeout_s,
                "Seconds a remote image may take to download, connect to last byte")
      ->capture_default_str()->check(CLI::Range(0.001, 1e6))->envname("DPSERVE_IMAGE_FETCH_TIMEOUT");
  s->add_option("--max-image-bytes", a->so.images.max_bytes,
                "Largest encoded image (JPEG/PNG file, after base64 decoding or as downloaded)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 40))->envname("DPSERVE_MAX_IMAGE_BYTES");
  s->add_option("--max-image-pixels", a->so.images.limits.max_decoded_pixels,
                "Largest decoded image (width x height, read from the file's header before decoding)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 40))->envname("DPSERVE_MAX_IMAGE_PIXELS");
  s->add_option("--image-decode-memory", a->so.images.decode_memory,
                "Bytes that the images being decoded may hold at once, across all requests (each image's share "
                "is worked out from its header before decoding; an image needing more alone is a 400)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 50))->envname("DPSERVE_IMAGE_DECODE_MEMORY");
  s->add_option("--image-decode-wait", a->so.images.decode_wait_s,
                "Seconds an image waits for its share of --image-decode-memory before the request gets 429")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0))->envname("DPSERVE_IMAGE_DECODE_WAIT");
  s->add_option("--max-images-per-request", a->so.images.max_images, "Most images in one request")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->envname("DPSERVE_MAX_IMAGES_PER_REQUEST");
  s->add_flag("--skip-tokenizer-init", a->so.skip_tokenizer_init,
              "Load no tokenizer (SGLang's flag): requests carry token ids (/generate input_ids), responses carry "
              "output_ids only; text inputs, chat and the OpenAI routes are a 400 saying so")
      ->envname("DPSERVE_SKIP_TOKENIZER_INIT");
  s->add_flag_callback("--no-webui", [a] { a->so.webui = false; },
                       "Do not serve the web page at / (chat, server info, live /metrics plots; see docs/webui.md): "
                       "/ is then a 404 like any unknown route")
      ->envname("DPSERVE_NO_WEBUI");
  s->add_flag("--is-embedding", a->is_embedding,
              "Serve the model as an embedding model (as SGLang's flag): POST /v1/embeddings returns its pooled, "
              "final-normed hidden states; generation routes answer 400. Pooling and normalisation come from the "
              "folder's sentence-transformers files (modules.json, 1_Pooling/config.json), else last token + L2")
      ->envname("DPSERVE_IS_EMBEDDING");
  s->add_option("--pooling", a->pooling,
                "--is-embedding: auto (the model folder's, else last), last, mean or cls")
      ->capture_default_str()->envname("DPSERVE_POOLING");
  s->add_option("--normalize-embeddings", a->normalize_embeddings,
                "--is-embedding: auto (a Normalize module in modules.json; on without modules.json), true or false")
      ->capture_default_str()->envname("DPSERVE_NORMALIZE_EMBEDDINGS");
  s->add_flag("--log-requests", a->so.log_requests, "Log each request's prompt and output (as SGLang's --log-requests)")
      ->envname("DPSERVE_LOG_REQUESTS");
  s->add_flag("--enable-metrics", a->enable_metrics,
              "Accepted for SGLang compatibility: /metrics is always on (dpserve_* and sglang:* names)")
      ->envname("DPSERVE_ENABLE_METRICS");
  s->add_option("--stall-timeout", a->rf.rt.stall_timeout,
                "Seconds the engine may go without a step while requests are pending before /health answers 503 "
                "(a stuck step; --watchdog-timeout ends the job later); 0 = never")
      ->capture_default_str()->check(CLI::Range(0.0, 1e7))->envname("DPSERVE_STALL_TIMEOUT");
  s->add_option("--nnodes", a->rf.rt.nodes.nnodes,
                "Nodes of one job started separately (SGLang's launch): each node runs `dpserve serve` with the "
                "same flags and its own --node-rank; (tp, or tp x dp without DP attention) / nnodes ranks per node")
      ->capture_default_str()->envname("DPSERVE_NNODES");
  s->add_option("--node-rank", a->rf.rt.nodes.node_rank,
                "This node's place 0..nnodes-1; node 0 holds ranks 0.. and serves HTTP")
      ->capture_default_str()->envname("DPSERVE_NODE_RANK");
  s->add_option("--dist-init-addr", a->rf.rt.nodes.dist_init_addr,
                "HOST:PORT on node 0 where the nodes meet (a tiny TCP rendezvous, authenticated by --dist-secret-file; "
                "MPI does the rest, over the interface that reaches it)")
      ->envname("DPSERVE_DIST_INIT_ADDR");
  s->add_option("--dist-timeout", a->rf.rt.nodes.timeout_seconds,
                "Seconds a node waits for the others to join (or for node 0's --dist-init-addr to answer)")
      ->capture_default_str()->check(CLI::Range(0.1, 1e6))->envname("DPSERVE_DIST_TIMEOUT");
  s->add_option("--dist-secret-file", a->rf.rt.nodes.secret_file,
                "File holding the nodes' shared secret (at least 16 bytes, the same on every node), required with "
                "--nnodes > 1; it authenticates the --dist-init-addr rendezvous. Or set DPSERVE_DIST_SECRET; never "
                "give the secret itself on the command line")
      ->envname("DPSERVE_DIST_SECRET_FILE");
  s->add_option("--dist-heartbeat-timeout", a->rf.rt.nodes.heartbeat_timeout,
                "Seconds a node of a --nnodes job may stay silent before the others count it lost and stop the job "
                "(a node whose dpserve exits or whose job fails is noticed at once)")
      ->capture_default_str()->check(CLI::Range(2.0, 1e6))->envname("DPSERVE_DIST_HEARTBEAT_TIMEOUT");
  s->add_option("--log-level", a->log_level, "trace, debug, info, warn (or SGLang's warning), error, critical")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "critical"}))
      ->envname("DPSERVE_LOG_LEVEL");
  s->callback([a] { run_serve(*a); });
}

}  // namespace dpserve::app
