// The Engine of rank 0: request streams, the router, and the driver side of the
// step loop. Frontend threads call enqueue / cancel / shutdown; the step thread
// (the process's main thread, the only one that calls MPI) calls next_step and
// on_reports.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

#include "engine/engine.h"
#include "engine/rank_worker.h"
#include "engine/request_limits.h"
#include "engine/router.h"

namespace dpserve {

struct EngineLimits {
  int64_t vocab = 0;
  int64_t hidden = 0;
  int64_t context_length = 0;
  int64_t kv_positions = 0;       // one rank's KV pool (the same on every rank): RequestLimits::kv_positions
  int64_t kv_bytes_per_page = 0;  // one KV page on one rank
  // --lora-paths adapters every rank loaded (RequestLimits::lora); run-time loads add to it.
  std::shared_ptr<LoraRegistry> lora;
  int32_t dp_size = 1;
  LoadBalanceMethod method = LoadBalanceMethod::kRoundRobin;
  int64_t max_new_requests_per_step = 1024;
  double stall_seconds = 60;  // stalled(): pending work and no step for this long (<= 0: never)
};

class DpEngine : public Engine, public StepDriver {
 public:
  explicit DpEngine(EngineLimits lim);
  ~DpEngine() override;

  std::shared_ptr<RequestStream> enqueue(Request r) override;
  // Several requests that reach the ranks in the same step (bench offline's batch): enqueued one by
  // one, a loaded machine could run a tiny model's whole request before the next one arrives.
  std::vector<std::shared_ptr<RequestStream>> enqueue_together(std::vector<Request> rs);
  void cancel(uint64_t id) override;
  void shutdown(std::chrono::milliseconds drain) override;
  bool healthy() const override;
  bool flush_cache() override;
  bool stalled() const override;
  EngineStats stats() const override;
  int64_t context_length() const override { return lim_.context_length; }
  int32_t dp_size() const override { return lim_.dp_size; }
  const RequestLimits& limits() const override { return req_limits_; }

  // Step-thread side.
  StepControl next_step(bool idle, std::chrono::milliseconds max_idle_wait) override;
  void on_reports(std::vector<GroupReport>& reports) override;
  void reject(const std::vector<NewRequest>& requests, const std::string& why) override;
  void on_lora_change(bool ok, const std::string& error) override;
  LoraChange load_lora(const std::string& name, const std::string& path) override;
  LoraChange unload_lora(const std::string& name) override;
  std::shared_ptr<const LoraRegistry> loras() const override { return lim_.lora; }
  // Called when the step loop has ended, or is about to (the watchdog): normally (open streams end
  // with "abort"), or because the engine failed (`why` given: open streams end with "error", `why`
  // and engine_fault). A loop still running shuts down at its next step.
  void mark_stopped(const std::string& why = {});
  // The shutdown step has been handed to the step loop (a drain past its deadline or with nothing left
  // in flight): a drain that has not got this far is stuck in a step (serve's drain guard).
  bool shutdown_sent() const {
    std::lock_guard lk(mu_);
    return shutdown_sent_;
  }
  // Seconds since the last step's reports came back (a stuck step keeps growing it; a slow one does not).
  double seconds_since_step() const {
    std::lock_guard lk(mu_);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - last_progress_).count();
  }

 private:
  class Stream;
  // A LoRA load / unload waiting for its step, then for every rank to apply it.
  struct LoraOp {
    bool load = false;
    int32_t slot = -1;
    std::string path;
    bool done = false;
    LoraChange result;
  };
  // Queues `op` and blocks until the step loop applied it (or the engine stopped).
  LoraChange run_lora_op(std::unique_lock<std::mutex>& lk, const std::shared_ptr<LoraOp>& op);
  std::deque<std::shared_ptr<LoraOp>> lora_ops_;  // waiting for a step
  std::shared_ptr<LoraOp> lora_inflight_;         // sent with the last control message
  std::condition_variable lora_cv_;
  struct Pending {
    uint64_t id;
    Request req;
  };

  EngineLimits lim_;
  RequestLimits req_limits_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> inbox_;
  std::vector<uint64_t> cancels_;
  std::map<uint64_t, std::shared_ptr<Stream>> streams_;
  Router router_;
  uint64_t next_id_ = 1;
  uint64_t step_ = 0;
  bool draining_ = false;
  bool shutdown_sent_ = false;
  bool flush_pending_ = false;
  bool stopped_ = false;
  std::string stop_reason_;
  std::chrono::steady_clock::time_point drain_deadline_;
  // Stall detection: the last step's end, or when work arrived at an idle engine if later.
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
  EngineStats stats_;
  // Per DP group: (step end, tokens generated in that step) of the last kGenThroughputWindow.
  std::vector<std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>>> gen_window_;
};

}  // namespace dpserve
