// The step loop every rank runs in lockstep (DESIGN.md, "One step"): receive
// rank 0's control message, schedule this DP group's batch, sync token counts
// over the MLP group, run the forward pass (an idle batch when the group has
// nothing to do), sample, and send the group's outputs to rank 0.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/control_channel.h"
#include "parallel/dp_attention.h"
#include "parallel/model_comm.h"
#include "parallel/topology.h"
#include "constrain/matcher_registry.h"
#include "engine/control_message.h"
#include "engine/draft_runner.h"
#include "engine/nextn_runner.h"
#include "engine/image_transfer.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/model.h"

namespace dpserve {

// How rank 0's per-step control message reaches the ranks.
//  kGlobal: one broadcast over the world; each rank keeps its group's share (the default).
//  kGroupLeader: rank 0 sends each group leader its group's share; the leader broadcasts it in its group.
enum class Dispatch { kGlobal, kGroupLeader };
const char* to_string(Dispatch d);  // "global" | "group-leader"

struct WorkerOptions {
  Dispatch dispatch = Dispatch::kGlobal;
  SchedulerConfig sched;
  int64_t page_size = 16;
  int64_t kv_pages = 0;                    // pages in this rank's KV pool
  int64_t embed_cache_requests = 256;      // requests whose input_embeds a rank holds at once
  ImageTransferMode image_transfer = ImageTransferMode::kPipelined;
  int64_t image_bytes_per_step = int64_t(4) << 20;  // pipelined: image bytes rank 0 sends per step
  std::vector<int32_t> eos_ids;            // end requests (finish rules) unless ignore_eos
  int64_t context_length = 0;              // positions a request may use (0: the model's)
  std::optional<uint64_t> random_seed;     // mixed into the seed of requests without one (--random-seed)
  // > 0: the step watchdog. A step running longer than this, or (on other ranks than 0) a wait this
  // long for rank 0's next control message, ends the job with a message naming what stopped. Rank 0
  // sends a heartbeat (an empty message) at least every watchdog_seconds / 4 when idle, so a silent
  // rank 0 is told apart from an idle one.
  double watchdog_seconds = 0;
  // Rank 0: called by the watchdog (on its own thread, bounded to a second) before the job ends, so
  // open request streams end with the reason instead of being cut.
  std::function<void(const std::string& why)> on_fatal;
  // Debugging (`generate --dump-logits`): when set, every position of every scheduled sequence gets
  // logits, passed here (request id, position, the vocabulary's logits) before sampling, in step order.
  std::function<void(uint64_t id, int64_t pos, std::span<const float> logits)> logits_tap;
  // Every position's logits computed, with or without a tap: set on every rank when rank 0 taps, so
  // the ranks of a group run the same rows (the forward's collectives need that) and none drafts.
  bool all_logits = false;
  // Called after this rank ran the vision tower for a request: its `images`, and `seconds` in
  // image_patches + the tower (the server's metrics and request log; rank 0 only, so it sees the
  // requests of rank 0's DP group).
  std::function<void(uint64_t id, int64_t images, double seconds)> image_tap;
  // Debugging (`generate --dump-image-embeds`): non-empty, every rank that runs the tower writes a
  // request's image embeddings to <dir>/rank<world rank>-req<id>.f32 (float32 [tokens, hidden]).
  std::string image_embeds_dump_dir;
  // The served tokenizer's vocabulary for structured outputs (null: requests with a constraint fail).
  std::shared_ptr<const constrain::VocabIndex> vocab;
  // Ids at or past this have no token (a model's vocabulary padded past its tokenizer's): never
  // sampled. 0: no limit.
  int64_t token_limit = 0;
  // STANDALONE speculative decoding: the draft model, loaded whole on this rank (the runtime's);
  // NEXTN: the target's multi-token-prediction layer (Model loaded with LoadOptions::nextn).
  Model* draft_model = nullptr;
  // --kv-cache-dir (kv/prefix_store.h): this rank's prefix cache file ("" = off), what a file must
  // match to be loaded, the most bytes of KV pages it may hold, and write-behind: the file is
  // rewritten once the tree adopted this many pages (and a quarter of its size) since it was last
  // written (0 = only at shutdown).
  std::string prefix_file;
  std::vector<std::pair<std::string, std::string>> prefix_identity;
  int64_t prefix_max_bytes = 0;
  int64_t prefix_write_pages = 0;
};

// Rank 0's side of the loop: where control messages come from and reports go.
class StepDriver {
 public:
  virtual ~StepDriver() = default;
  // The next step's control message. `idle`: no group has work; the driver may block until some
  // arrives, but for at most `max_idle_wait` (zero: no limit): then it returns an empty message, a
  // heartbeat that tells the other ranks rank 0 is alive.
  virtual StepControl next_step(bool idle, std::chrono::milliseconds max_idle_wait) = 0;
  // Every group's report for the step just run (group order).
  virtual void on_reports(std::vector<GroupReport>& reports) = 0;
  // New requests of a step that could not be sent (their message failed to serialize): they end
  // with this error and the step goes out without them.
  virtual void reject(const std::vector<NewRequest>& requests, const std::string& why) = 0;
  // The LoRA load or unload the last control message carried has taken effect on every rank (ok),
  // or on none (a load that failed somewhere: `error` is rank 0's reason, or says another rank failed).
  virtual void on_lora_change(bool ok, const std::string& error) = 0;
};

struct WorkerCounters {
  int64_t steps = 0;
  int64_t forward_steps = 0;
  int64_t idle_batches = 0;        // forwards with zero local tokens (other groups had work)
  int64_t control_broadcasts = 0;
  int64_t control_bytes = 0;
  int64_t max_new_requests = 0;    // most new requests one control message carried
  // Rank 0: time spent on the control plane (serialize, broadcast, deserialize, keep own share)
  // and in steps overall, both excluding the wait for new requests while idle.
  double control_seconds = 0;
  double busy_seconds = 0;
  int64_t embed_evictions = 0;
  int64_t images_encoded = 0;     // vision tower runs (one per image per prefill that reached it)
  double image_seconds = 0;       // time in image_patches + the tower
};

class RankWorker {
 public:
  RankWorker(Model& model, const Topology& topo, const Comms& comms, DistModelComm& mcomm, WorkerOptions opts);
  ~RankWorker();

  // Runs steps until a control message says shutdown. `driver` is required on world rank 0, null elsewhere.
  void run(StepDriver* driver);
  // From any thread: reports `why` (on_fatal: rank 0's open streams end with it) and ends the
  // process, as the watchdog does; for faults seen outside the step loop (a lost node, a rank the
  // launcher saw stop). `what` heads the log line.
  [[noreturn]] void stop_job(const std::string& why, const char* what = "node lost") { die(why, what); }
  const WorkerCounters& counters() const { return counters_; }
  // --kv-cache-dir: reads this rank's prefix cache file into the pool and the prefix tree. Collective
  // over the DP group (every rank of it calls it, before the first step): the group adopts what it
  // read only if every rank of it read the same tree, else none does. A file that cannot be used is
  // a warning naming why. Returns the pages adopted.
  int64_t load_prefix_cache();
  const ImageTransferCounters& image_counters() const { return images_.counters(); }

 private:
  void apply(const StepControl& c, GroupReport& rep);
  // A LoRA load / unload the message carries, in lockstep over the world (a collective when loading).
  void change_lora(const StepControl& c, StepDriver* driver);
  void admit(NewRequest& nr, GroupReport& rep);
  void admit_or_end(NewRequest& nr, GroupReport& rep);  // admit; a failure ends that request alone
  // Ends a request from outside the finish rules (cancel, admission failure, eviction): drops it from
  // the scheduler and reports why.
  void end(uint64_t id, Finish f, GroupReport& rep, const std::string& error = {});
  // The tower output of every image of `st`, if the chunk [pos0, pos0 + n) reaches an image row and
  // it is not held already.
  void encode_images(RequestState& st, int64_t pos0, int64_t n);
  void step_forward(const ScheduledBatch& b, const StepSync& sync, GroupReport& rep);
  // Pooling heads: adds this step's hidden rows (hidden_) to their requests' pool_sum; pooled() is
  // the request's vector once its prompt is done (the mean divides by the prompt's length).
  void pool_rows(const ScheduledBatch& b, const ForwardBatch& fb);
  std::vector<float> pooled(const RequestState& st) const;
  GroupReport make_report();
  StepControl receive_control(StepDriver* driver, bool idle);
  void exchange_reports(GroupReport& rep, StepDriver* driver, bool& any_work);
  // --kv-cache-dir: writes the prefix tree and its pages to this rank's file (local I/O, no
  // collective; every rank of a group decides the same, from the same tree). A failure is a warning.
  void save_prefix_cache(const char* why);
  int64_t saved_at_inserted_ = 0;  // the tree's inserted_pages() when the file was last written

  Model& model_;
  Topology topo_;
  const Comms& comms_;
  DistModelComm& mcomm_;
  WorkerOptions opts_;
  std::unique_ptr<KVPool> kv_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<DraftRunner> drafter_;  // STANDALONE speculative decoding (null otherwise)
  std::unique_ptr<NextnRunner> nextn_;    // NEXTN speculative decoding (null otherwise)
  std::unique_ptr<constrain::MatcherRegistry> matchers_;  // structured outputs (null without a vocabulary)
  std::vector<uint64_t> masks_;                          // this step's allowed-token masks
  ControlChannel control_;        // over the world (global dispatch)
  ControlChannel group_control_;  // over the DP group (group-leader dispatch)
  std::deque<uint64_t> embed_fifo_;  // requests holding input_embeds, oldest first
  ImageTransfer images_;             // pipelined image bytes; requests waiting for theirs
  std::vector<float> logits_;
  std::vector<float> hidden_;  // this step's pooled rows (ForwardBatch::hidden_rows)
  WorkerCounters counters_;
  double step_t0_ = 0;  // start of the current step's work (after any idle wait)
  // Watchdog: steady-clock seconds at which the running step began, 0 between steps; and at which
  // this rank began waiting for the next control message (not rank 0; armed after the first one).
  std::atomic<double> step_began_{0};
  std::atomic<double> control_wait_began_{0};
  std::atomic<int64_t> watched_step_{0};  // counters_.steps, for the watchdog's message
  // Set when run() returns; the watchdog sleeps on the condition variable, so it ends at once and the
  // process does not wait out a tick (up to 200 ms) to exit.
  std::mutex watchdog_mu_;
  std::condition_variable watchdog_cv_;
  bool stop_watchdog_ = false;
  void watchdog_loop();
  [[noreturn]] void die(const std::string& why, const char* what = "watchdog");
  std::string control_source() const;  // "rank 0", or "rank 0 (via group leader rank N)"
  void arm_control_send();              // rank 0: the watchdog also covers sending the control message
};

}  // namespace dpserve
