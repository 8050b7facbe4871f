#include "apps/dpserve/runtime_flags.h"

#include "apps/dpserve/kv_flags.h"
#include "core/check.h"
#include "engine/scheduler.h"

#include <limits>
#include <string>
#include <vector>

namespace dpserve::app {

namespace {

// An option whose value is one of an enum's names (each layer's to_string owns the spelling): the
// string becomes the enum here, once, and a bad value is an error naming the flag and the choices.
template <typename E>
CLI::Option* add_enum_option(CLI::App* c, const std::string& flag, E& target, std::vector<E> values,
                             const std::string& help) {
  std::vector<std::string> names;
  for (E v : values) names.push_back(to_string(v));
  auto set = [&target, values](const std::string& s) {
    for (E v : values)
      if (s == to_string(v)) target = v;
  };
  return c->add_option_function<std::string>(flag, set, help)
      ->check(CLI::IsMember(names))
      ->default_str(to_string(target));
}

// --quantization's values (and the draft model's): llama.cpp's block types; SGLang's other methods
// are refused with the reason.
CLI::Validator quantization_check() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (quantization_from_name(s)) return "";
        const std::string why = quantization_refusal(s);
        return why.empty() ? "unknown method '" + s + "' (choose q8_0, q4_0, q4_k, q4_k_m or none)"
                           : "'" + s + "' is not supported: " + why;
      },
      "METHOD");
}

// SGLang's speculative decoding flags. NGRAM, STANDALONE and NEXTN drafting are built: every other
// algorithm or a draft tree is refused by name rather than accepted and ignored.
void add_speculative_flags(CLI::App* c, SpeculativeConfig& sp) {
  auto* algo = c->add_option_function<std::string>(
                    "--speculative-algorithm",
                    [&sp](const std::string& s) {
                      sp.algorithm = s == "STANDALONE" || s == "standalone" ? SpecAlgorithm::kStandalone
                                     : s == "NEXTN" || s == "nextn"             ? SpecAlgorithm::kNextn
                                                                                : SpecAlgorithm::kNgram;
                    },
                    "Speculative decoding: NGRAM (prompt lookup: each request drafts the tokens that followed the "
                    "latest earlier occurrence of its last tokens, in its prompt or output; no second model), "
                    "STANDALONE (a smaller model with the same vocabulary, --speculative-draft-model-path, drafts "
                    "greedily) or NEXTN (DeepSeek-V3, GLM-4.5 / 4.6: the checkpoint's own multi-token-prediction layer, "
                    "num_nextn_predict_layers >= 1, drafts from the target's hidden states). The drafts of every "
                    "request are verified in the step's one forward pass; greedy output is unchanged, sampled output "
                    "keeps its distribution (docs/speculative.md). EAGLE and EAGLE3 are refused: not built yet")
                   ->check(CLI::Validator(
                       [](std::string& s) -> std::string {
                         if (s == "NGRAM" || s == "ngram" || s == "STANDALONE" || s == "standalone" || s == "NEXTN" ||
                             s == "nextn")
                           return "";
                         if (s == "MTP") return "'MTP' is spelled NEXTN here (SGLang's name for DeepSeek's MTP drafting)";
                         if (s == "EAGLE" || s == "EAGLE3")
                           return "'" + s + "' is not supported yet: dpserve drafts with NGRAM, STANDALONE or NEXTN";
                         return "unknown algorithm '" + s + "' (choose NGRAM, STANDALONE or NEXTN)";
                       },
                       "ALGO"))
                   ->envname("DPSERVE_SPECULATIVE_ALGORITHM");
  c->add_option("--speculative-num-steps", sp.max_draft,
                "Speculative decoding: most tokens a request drafts per step (an adaptive cap lowers it for "
                "requests whose drafts fail)")
      ->default_str(std::to_string(kDefaultMaxDraft))->check(CLI::Range(1, 64))->needs(algo)
      ->envname("DPSERVE_SPECULATIVE_NUM_STEPS");
  c->add_option("--speculative-num-draft-tokens", sp.num_draft_tokens,
                "Speculative decoding: tokens verified per request and step, the last token included (chain "
                "drafts: --speculative-num-steps + 1; either flag sets the other)")
      ->check(CLI::Range(2, 65))->needs(algo)->envname("DPSERVE_SPECULATIVE_NUM_DRAFT_TOKENS");
  c->add_option("--speculative-eagle-topk", sp.topk,
                "Speculative decoding: branches per draft position; only 1 (chain drafts) is built")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            return s == "1" ? "" : "only 1 is supported: dpserve verifies chains of drafts, not trees";
          },
          "1"))
      ->needs(algo)->envname("DPSERVE_SPECULATIVE_EAGLE_TOPK");
  c->add_option("--speculative-draft-model-path", sp.draft_model_path,
                "STANDALONE: the draft model (Hugging Face folder, GGUF file or llama2.c checkpoint) with the "
                "target's vocabulary, e.g. a smaller model of the same family or a Q4_0 copy of the target; loaded "
                "whole on every rank")
      ->check(CLI::ExistingPath)->needs(algo)->envname("DPSERVE_SPECULATIVE_DRAFT_MODEL_PATH");
  c->add_option("--speculative-ngram-min-match-window-size", sp.ngram_min_window,
                "NGRAM: shortest suffix of a request's tokens looked up in its earlier tokens")
      ->capture_default_str()->check(CLI::Range(1, 64))->needs(algo)
      ->envname("DPSERVE_SPECULATIVE_NGRAM_MIN_MATCH_WINDOW_SIZE");
  c->add_option("--speculative-ngram-max-match-window-size", sp.ngram_max_window,
                "NGRAM: longest suffix looked up (the longest that recurs wins)")
      ->capture_default_str()->check(CLI::Range(1, 64))->needs(algo)
      ->envname("DPSERVE_SPECULATIVE_NGRAM_MAX_MATCH_WINDOW_SIZE");
  c->add_option("--speculative-max-step-rows", sp.max_step_rows,
                "Speculative decoding: rows a step of a DP group gives its decoding requests and their drafts "
                "together; drafts fill what the decodes leave (oldest requests first), so a step of this many "
                "decodes drafts nothing (a large batch is compute-bound, where drafts cost more than they save). "
                "0 = no bound")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 20))->needs(algo)
      ->envname("DPSERVE_SPECULATIVE_MAX_STEP_ROWS");
}

}  // namespace

void add_runtime_flags(CLI::App* c, RuntimeFlags& f) {
  auto& o = f.rt;
  c->add_option("--model-path", o.model_path,
                "Hugging Face model folder, GGUF file (or a folder holding one, or any file of a split set), or "
                "llama2.c checkpoint (.bin). Default: the bundled stories260K")
      ->envname("DPSERVE_MODEL_PATH");
  // Our names are llama.cpp's block types; SGLang's w8a8_int8 (int8 weights and activations)
  // means q8_0; SGLang's other methods are refused with the reason.
  c->add_option_function<std::string>(
       "--quantization", [&o](const std::string& s) { o.quantization = *quantization_from_name(s); },
       "Quantize float (bf16/f16/f32) weight matrices on load: q8_0, q4_0 and q4_k (every matrix that type; "
       "the LM head Q6_K for the 4-bit ones), q4_k_m (llama.cpp's Q4_K_M mix), none. SGLang's w8a8_int8 maps "
       "to q8_0. Norms stay fp32, the embedding table keeps its type (only looked-up rows are read); "
       "matrices already quantized (GGUF) keep theirs")
      ->check(quantization_check())
      ->default_str("none")
      ->envname("DPSERVE_QUANTIZATION");
  c->add_option("--tokenizer-path", f.tokenizer_path,
                "Tokenizer folder or file. Default: the model folder, a GGUF model's own vocabulary, or the tok*.bin "
                "beside a llama2.c checkpoint")
      ->envname("DPSERVE_TOKENIZER_PATH");
  c->add_option("--tp-size,--tp,--tensor-parallel-size", o.tp_size, "Ranks that shard one model copy (tensor parallelism)")
      ->capture_default_str()->check(CLI::Range(1, 1024))->envname("DPSERVE_TP_SIZE");
  c->add_option("--dp-size,--dp,--data-parallel-size", o.dp_size,
                "Data-parallel groups: with --enable-dp-attention, attention groups inside the tp ranks; "
                "without it, independent replicas of tp ranks each")
      ->capture_default_str()->check(CLI::Range(1, 1024))->envname("DPSERVE_DP_SIZE");
  c->add_flag("--enable-dp-attention", o.enable_dp_attention,
              "Attention data-parallel in dp groups of tp/dp ranks; MLP/MoE over all tp ranks")
      ->envname("DPSERVE_ENABLE_DP_ATTENTION");
  // SGLang's --enable-dp-lm-head selects what dpserve always does (the LM head split inside each DP
  // group, so logits never cross groups); SGLang's default, the LM head split over every rank, is not
  // built. The flag is refused with that explanation rather than accepted and ignored.
  c->add_flag_callback(
       "--enable-dp-lm-head",
       [] {
         throw CLI::ValidationError("--enable-dp-lm-head",
                                    "dpserve always splits the LM head inside each DP group (what this flag "
                                    "selects in SGLang); drop the flag");
       })
      ->group("");
  c->add_option("--ep-size", o.ep_size, "MoE: ranks holding whole experts; each expert is also split over tp/ep ranks (1 = every expert split over all ranks)")
      ->capture_default_str()->check(CLI::Range(1, 1024))->envname("DPSERVE_EP_SIZE");
  add_enum_option(c, "--dp-padding-mode", o.dp_padding_mode,
                  {DpPaddingRequest::kAuto, DpPaddingRequest::kMaxLen, DpPaddingRequest::kSumLen,
                   DpPaddingRequest::kSglang},
                  "How DP groups' tokens are laid out for the MLP: auto (measured rule: sum_len unless all groups "
                  "are equal), max_len, sum_len, sglang (SGLang's rule)")
      ->envname("DPSERVE_DP_PADDING_MODE");
  add_enum_option(c, "--load-balance-method", o.load_balance_method,
                  {LoadBalanceMethod::kRoundRobin, LoadBalanceMethod::kShortestQueue, LoadBalanceMethod::kLeastTokens},
                  "How requests are spread over DP groups: round_robin, shortest_queue, least_tokens")
      ->envname("DPSERVE_LOAD_BALANCE_METHOD");
  add_enum_option(c, "--dispatch", o.dispatch, {Dispatch::kGlobal, Dispatch::kGroupLeader},
                  "How each step's requests reach the ranks: global (one broadcast, each rank keeps its group's "
                  "share) or group-leader (rank 0 sends each DP group leader its share, which it re-broadcasts)")
      ->envname("DPSERVE_DISPATCH");
  c->add_option("--threads", o.threads, "OpenMP threads per rank (0 = the CPUs the rank is bound to, else CPUs / ranks on this machine)")
      ->capture_default_str()->check(CLI::Range(0, 1024))->envname("DPSERVE_THREADS");
  c->add_option_function<std::string>(
       "--numa",
       [&f](const std::string& v) {
         try {
           f.numa = parse_numa_flag(v);
         } catch (const Error& e) {
           throw CLI::ValidationError(e.what());
         }
       },
       "NUMA placement of the ranks dpserve starts: auto (one rank, or an equal share of ranks, per NUMA node "
       "-- else per socket -- bound with mpirun --map-by/--bind-to, threads pinned; unbound on a 1-NUMA machine), "
       "none (--bind-to none), or N (spread over the first N NUMA nodes; N must divide the ranks); default auto")
      ->envname("DPSERVE_NUMA");
  c->add_option("--page-size", o.page_size, "KV cache page size in positions")
      ->capture_default_str()->check(CLI::Range(1, 4096))->envname("DPSERVE_PAGE_SIZE");
  add_kv_cache_flags(c, o);
  c->add_option("--max-running-requests", o.sched.max_running_requests, "Requests decoding at once per DP group")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20))->envname("DPSERVE_MAX_RUNNING_REQUESTS");
  c->add_option_function<std::string>(
       "--schedule-policy",
       [&o](const std::string& v) {
         try {
           o.sched.policy = parse_schedule_policy(v);
         } catch (const Error& e) {
           throw CLI::ValidationError(e.what());
         }
       },
       "Order waiting requests are admitted in, per DP group (SGLang's policies): fcfs (arrival), lpm (longest "
       "cached prefix first; fcfs beyond 128 waiting), lof (largest max_new_tokens first) or random (shuffled "
       "every step); preempted requests go first under each; default fcfs")
      ->envname("DPSERVE_SCHEDULE_POLICY");
  auto* priority = c->add_flag("--enable-priority-scheduling", o.sched.priority_scheduling,
              "Serve requests by their 'priority' field (SGLang's and vLLM's): per DP group, waiting requests are "
              "admitted and running ones kept most important first (arrival order within a priority), a KV "
              "shortage preempts the least important, and a much more important request preempts running ones "
              "(--priority-scheduling-preemption-threshold); without it a request's non-zero priority is a 400")
      ->envname("DPSERVE_ENABLE_PRIORITY_SCHEDULING");
  c->add_flag("--schedule-low-priority-values-first", o.sched.low_priority_values_first,
              "With --enable-priority-scheduling: smaller 'priority' values are more important (vLLM's order); "
              "by default larger ones are (SGLang's)")
      ->envname("DPSERVE_SCHEDULE_LOW_PRIORITY_VALUES_FIRST")
      ->needs(priority);
  c->add_option("--priority-scheduling-preemption-threshold", o.sched.priority_preemption_threshold,
                "With --enable-priority-scheduling: a waiting request preempts running ones less important than it "
                "by more than this many priority values (least important first) when the running requests fill "
                "--max-running-requests or the KV pool cannot hold its first chunk; they wait again and are "
                "recomputed (SGLang's)")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 40))
      ->envname("DPSERVE_PRIORITY_SCHEDULING_PREEMPTION_THRESHOLD")->needs(priority);
  c->add_flag_callback("--disable-priority-preemption", [&o] { o.sched.priority_preemption = false; },
                       "With --enable-priority-scheduling: never preempt a running request for a more important "
                       "waiting one (priority then orders admission and picks a KV shortage's victims only)")
      ->envname("DPSERVE_DISABLE_PRIORITY_PREEMPTION")->needs(priority);
  c->add_option("--chunked-prefill-size", o.sched.chunked_prefill_size,
                "Most prompt tokens prefilled per step per DP group (long prompts are split; <= 0: no limit)")
      ->capture_default_str()->envname("DPSERVE_CHUNKED_PREFILL_SIZE");
  c->add_option("--max-prefill-tokens", o.sched.max_prefill_tokens, "Most tokens in one step per DP group")
      ->capture_default_str()->check(CLI::Range(1, 1 << 24))->envname("DPSERVE_MAX_PREFILL_TOKENS");
  c->add_option("--max-total-tokens", o.max_total_tokens,
                "KV cache positions per rank (0 = from --mem-fraction, capped at what can be used: the context times "
                "--max-running-requests, or times the default 64 when that is less, so cached prefixes have room)")
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 40))->envname("DPSERVE_MAX_TOTAL_TOKENS");
  c->add_option("--mem-fraction", o.mem_fraction, "Share of available memory the KV caches of this machine may use")
      ->capture_default_str()->check(CLI::Range(0.001, 0.95))->envname("DPSERVE_MEM_FRACTION");
  auto* mfs = c->add_option("--mem-fraction-static", o.mem_fraction_static,
                "As SGLang: the share of this machine's memory for weights and KV caches together (the KV pools "
                "get what the weights leave); replaces --mem-fraction")
      ->check(CLI::Range(0.001, 0.95))->envname("DPSERVE_MEM_FRACTION_STATIC");
  c->get_option("--mem-fraction")->excludes(mfs);
  c->add_option("--context-length", o.context_length,
                "Positions a request may use, prompt and output (at most the model's; default: the model's). LongRoPE "
                "models (Phi-3 / Phi-4 128k) run with their long RoPE factors iff this exceeds the original context "
                "(original_max_position_embeddings, 4096): set it to 4096 to serve them as transformers does "
                "short prompts")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 31))->envname("DPSERVE_CONTEXT_LENGTH");
  c->add_option_function<uint64_t>(
       "--random-seed", [&o](uint64_t v) { o.random_seed = v, o.has_random_seed = true; },
       "Seed of the sampling of requests that give none (each request still draws its own stream), so a run "
       "can be repeated; default: a random one at every start")
      ->check(CLI::Range(int64_t(0), std::numeric_limits<int64_t>::max()))->envname("DPSERVE_RANDOM_SEED");
  c->add_flag("--trust-remote-code", f.trust_remote_code,
              "Accepted for SGLang compatibility; has no effect (dpserve runs no code from model folders)")
      ->envname("DPSERVE_TRUST_REMOTE_CODE");
  c->add_flag("--disable-radix-cache", f.disable_radix_cache, "Do not reuse KV pages of shared prompt prefixes")
      ->envname("DPSERVE_DISABLE_RADIX_CACHE");
  c->add_option("--watchdog-timeout", o.watchdog_timeout,
                "Seconds one step may run, or a rank may wait for rank 0's next step, before the job is "
                "stopped with a message naming what stopped (a rank stopped or a collective is stuck). The dpserve "
                "launcher also kills a rank that stays stopped (SIGSTOP, a debugger) for half this time, naming it; "
                "0 = both off")
      ->capture_default_str()->check(CLI::Range(0.0, 1e7))->envname("DPSERVE_WATCHDOG_TIMEOUT");
  c->add_flag("--split-collective-waits", o.split_collective_waits,
              "Diagnostics: a barrier before every collective of the forward pass, timed apart, so that "
              "`bench offline` can tell waiting for the slowest rank from moving the data (slows every step)")
      ->envname("DPSERVE_SPLIT_COLLECTIVE_WAITS");
  c->add_option("--embed-cache-requests", o.embed_cache_requests,
                "Requests whose input_embeds each rank holds until they finish (oldest evicted beyond)")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20))->envname("DPSERVE_EMBED_CACHE_REQUESTS");
  add_enum_option(c, "--image-transfer", o.image_transfer,
                  {ImageTransferMode::kPipelined, ImageTransferMode::kStepMessage},
                  "How rank 0 ships decoded images to the ranks: pipelined (in chunks of at most "
                  "--image-bytes-per-step over the next steps, only to the request's DP group, which admits the "
                  "request once all its bytes arrived) or step-message (inside the step's control message, to "
                  "every rank)")
      ->envname("DPSERVE_IMAGE_TRANSFER");
  add_enum_option(c, "--vision-tower", o.vision_tower, {VisionPlacement::kSharded, VisionPlacement::kReplicated},
                  "Vision-language models: how the ranks of a request's group (its DP-attention group, or all tp "
                  "ranks) run the vision tower: sharded (each rank takes a share of the image's attention windows; "
                  "K/V of the full-attention blocks and the output rows are all-gathered; bit-identical to "
                  "replicated) or replicated (each rank runs the whole tower). Default sharded: at tp=2 it encoded "
                  "a 640x480 or 1280x960 image in 0.44-0.62x the replicated time (docs/benchmarks.md)")
      ->envname("DPSERVE_VISION_TOWER");
  add_speculative_flags(c, o.sched.spec);
  c->add_option_function<std::string>(
       "--speculative-draft-model-quantization",
       [&o](const std::string& s) { o.draft_quantization = *quantization_from_name(s); },
       "STANDALONE: quantize the draft model's float matrices on load, as --quantization does the target's "
       "(e.g. the target itself as its own q4_0 draft)")
      ->check(quantization_check())
      ->default_str("none")
      ->needs("--speculative-draft-model-path")
      ->envname("DPSERVE_SPECULATIVE_DRAFT_MODEL_QUANTIZATION");
  c->add_option("--image-bytes-per-step", o.image_bytes_per_step,
                "Pipelined image transfer: RGB bytes rank 0 sends per step (all groups together), so one large "
                "image delays the other requests' steps by a bounded copy")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 30))->envname("DPSERVE_IMAGE_BYTES_PER_STEP");
  // Checked once the command line is read, before any rank starts or model loads: the speculative
  // flags (filling --speculative-num-steps) and the layout, so a bad one is a single message rather
  // than one per rank after mpirun starts.
  c->parse_complete_callback([&o] {
    validate(o.sched.spec);
    check_layout_flags({.tp_size = o.tp_size, .dp_size = o.dp_size, .enable_dp_attention = o.enable_dp_attention,
                        .ep_size = o.ep_size});
  });
}

int requested_world(const RuntimeFlags& f) {
  return f.rt.enable_dp_attention ? f.rt.tp_size : f.rt.tp_size * f.rt.dp_size;
}

}  // namespace dpserve::app
