// Brings one rank up: topology from the flags and the MPI world, communicators,
// this rank's shard of the model, its KV pool and step loop, and on rank 0 the
// Engine the frontend talks to. Shared by `dpserve generate` and `dpserve serve`.
#pragma once

#include <functional>
#include <span>
#include <memory>
#include <string>
#include <vector>

#include "engine/dp_engine.h"
#include "engine/image_transfer.h"
#include "engine/scheduler.h"
#include "parallel/dp_attention.h"
#include "parallel/model_comm.h"
#include "parallel/node_join.h"
#include "kv/kv_dtype.h"
#include "model/config.h"
#include "model/quant_recipe.h"
#include "model/vision_tower.h"

namespace dpserve {

class Tokenizer;

class Model;

struct RuntimeOptions {
  std::string model_path;
  // --lora-paths: the LoRA adapter folders every rank loads after the model, in this order (slot i =
  // lora_dirs[i], the Request::lora that selects it).
  std::vector<std::string> lora_dirs;
  std::vector<std::string> lora_names;  // the names requests select them by (empty: their folders)
  Quantization quantization = Quantization::kNone;  // float weights to block types on load
  Quantization draft_quantization = Quantization::kNone;  // the same for a STANDALONE draft model
  int tp_size = 1;
  int dp_size = 1;
  int ep_size = 1;
  bool enable_dp_attention = false;
  DpPaddingRequest dp_padding_mode = DpPaddingRequest::kAuto;
  LoadBalanceMethod load_balance_method = LoadBalanceMethod::kRoundRobin;
  Dispatch dispatch = Dispatch::kGlobal;
  SchedulerConfig sched;
  int64_t page_size = 16;
  KVCacheDtype kv_cache_dtype = KVCacheDtype::kAuto;  // SGLang's --kv-cache-dtype (kv/kv_dtype.h)
  // --mla-attention absorbed: MLA models attend in the absorbed form only (model/mla_attention.h), so
  // a token's result never depends on how its prompt was split into prefill chunks; false: the
  // cheaper form per sequence and step.
  bool mla_absorbed_only = false;
  // --kv-cache-dir: where each rank keeps its prefix cache file (kv/prefix_store.h; "" = off), the
  // most bytes of KV pages one rank's file holds (--kv-cache-dir-max-gb), and write-behind: the file
  // is rewritten once the tree adopted this many new tokens (0 = only at shutdown).
  std::string kv_cache_dir;
  double kv_cache_dir_max_gb = 4;
  int64_t kv_cache_write_behind_tokens = 4096;
  int64_t max_total_tokens = 0;  // KV positions per rank's pool; 0 = from mem_fraction
  double mem_fraction = 0.25;    // share of available memory this machine's KV pools may take
  // SGLang's --mem-fraction-static (> 0 replaces mem_fraction): the share of this machine's memory
  // for weights and KV caches together; the KV pool gets what the weights leave of it.
  double mem_fraction_static = 0;
  int64_t context_length = 0;    // SGLang's --context-length: at most the model's (0 = the model's)
  uint64_t random_seed = 0;      // SGLang's --random-seed: the sampling seed of requests without one
  bool has_random_seed = false;
  int threads = 0;               // per rank; 0 = cores / ranks on this machine
  int64_t embed_cache_requests = 256;
  ImageTransferMode image_transfer = ImageTransferMode::kPipelined;  // how image bytes reach the ranks
  int64_t image_bytes_per_step = int64_t(4) << 20;                   // pipelined: rank 0's send budget per step
  VisionPlacement vision_tower = VisionPlacement::kSharded;          // where a group runs the vision tower
  std::string image_embeds_dump_dir;  // debugging (`generate --dump-image-embeds`): see WorkerOptions
  double watchdog_timeout = 600;  // seconds a step (or a wait for rank 0) may take before the job is stopped; 0 = off
  double stall_timeout = 60;      // Engine::stalled() (/health 503): pending work, no step for this long; 0 = off
  bool split_collective_waits = false;  // diagnostics: a timed barrier before every forward collective
  // `serve --nnodes N --node-rank R --dist-init-addr HOST:PORT`: this process is one node's job; the
  // nodes join into one world before anything else (parallel/node_join.h).
  NodeJoinOptions nodes;
  std::vector<int32_t> eos_ids;  // from the tokenizer; merged with config.json's
  // The served tokenizer (loaded on every rank): structured outputs build their vocabulary index
  // from it. Null: requests with an output constraint fail.
  const Tokenizer* tokenizer = nullptr;
  // Debugging: every position's logits before sampling (see WorkerOptions::logits_tap; rank 0 only).
  std::function<void(uint64_t id, int64_t pos, std::span<const float> logits)> logits_tap;
  // Set on every rank with logits_tap (`--dump-logits` on any layout): see WorkerOptions::all_logits.
  bool all_logits = false;
  // Vision tower runs of rank 0's DP group (see WorkerOptions::image_tap; rank 0 only).
  std::function<void(uint64_t id, int64_t images, double seconds)> image_tap;
};

class Runtime {
 public:
  // Collective: every rank of the MPI world calls it with the same options.
  static std::unique_ptr<Runtime> start(const RuntimeOptions& opts);
  ~Runtime();

  int rank() const;
  int world_size() const;
  const ModelConfig& model_config() const;
  const Model& model() const;
  // This rank's model (e.g. to attach a phase clock before requests run: model/step_phases.h).
  Model& model();
  // One line for the start-up log: this rank's group, KV budget, threads and, with several ranks,
  // which host each rank runs on (collected once at start).
  std::string describe() const;
  int64_t kv_tokens_per_rank() const;
  // The engine (world rank 0 only; null elsewhere).
  DpEngine* engine();
  const WorkerCounters& counters() const;
  const ImageTransferCounters& image_counters() const;
  // This rank's time in the forward pass's collectives so far (readable while steps run).
  CollectiveTimes collective_times() const;
  // Ends the job now from any thread (a lost node, a stopped rank): open streams end with `why` as an
  // engine fault, as when the step watchdog fires, and this process exits (status 3); the launcher
  // stops the other ranks. `what` heads the log line (`rank 0: <what>: <why>. Stopping the job.`).
  [[noreturn]] void stop_job(const std::string& why, const char* what = "node lost");
  // Runs the step loop on this thread (it must be the thread that initialised MPI) until shutdown.
  void run();
  // run(), and on world rank 0 `client` on a helper thread meanwhile; the engine shuts down when
  // the client returns or throws, and the client's exception is rethrown here.
  void run_with_client(const std::function<void(DpEngine&)>& client);

 private:
  struct Impl;
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpserve
