// The scheduler of one DP group: continuous batching with chunked prefill, paged KV allocation,
// radix prefix reuse and preemption. It owns every request's state on the ranks (RequestState)
// from add() to the request's end and applies the finish rules when it commits a token. Pure and
// deterministic: every rank of a group runs one on the same inputs and forms bit-identical batches
// (no clocks, no randomness, ties broken by arrival order).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/finish_rules.h"
#include "engine/request_state.h"
#include "engine/speculative.h"
#include "kv/kv_pool.h"
#include "kv/radix_cache.h"

namespace dpserve {

// The order waiting requests are admitted in (SGLang's --schedule-policy): fcfs, arrival order; lpm,
// longest cached prefix first (cache-aware: requests sharing a prefix run while it is in the tree);
// lof, longest output (largest max_new_tokens) first; random, a fresh shuffle every step. Preempted
// requests go first under each.
enum class SchedulePolicy { kFcfs, kLpm, kLof, kRandom };
// "fcfs" / "lpm" / "lof" / "random"; SGLang's dfs-weight and anything else are an error naming the value.
SchedulePolicy parse_schedule_policy(const std::string& name);
const char* schedule_policy_name(SchedulePolicy p);

struct SchedulerConfig {
  int64_t max_running_requests = 64;  // requests holding KV at once (decoding or mid-prefill), >= 1
  int64_t chunked_prefill_size = 512; // max prompt tokens per step over all sequences (<= 0: unlimited)
  int64_t max_prefill_tokens = 4096;  // hard cap on tokens in one step (prefill + decode), >= 1
  bool enable_prefix_cache = true;
  SchedulePolicy policy = SchedulePolicy::kFcfs;
  // Prompt tokens per step over the prefill chunks of requests that want prompt logprobs (each such
  // token is a row of logits, vocab floats): bounds that memory. <= 0: unlimited.
  int64_t max_prompt_logprob_rows = 0;
  // Speculative decoding: decoding requests draft tokens that the step verifies (engine/speculative.h).
  SpeculativeConfig spec;
  // Priority scheduling (SGLang's --enable-priority-scheduling; Request::priority): waiting requests
  // are admitted, and running ones served and kept, most important first (arrival order within a
  // priority); a KV shortage preempts the least important. Larger values are more important unless
  // low_priority_values_first (SGLang's --schedule-low-priority-values-first; vLLM's order).
  bool priority_scheduling = false;
  bool low_priority_values_first = false;
  // Priority preemption (SGLang's, on with priority scheduling unless disabled): when the running
  // requests fill max_running_requests, or the pool cannot hold the first chunk of the most important
  // waiting request, that request takes the place of running ones less important than it by more than
  // this many priority values (least important first); they wait again and are recomputed.
  bool priority_preemption = true;
  int64_t priority_preemption_threshold = 10;
};

struct ScheduledSeq {
  uint64_t id = 0;
  RequestState* state = nullptr;  // the request's state (valid until it ends: commit() or abort())
  std::vector<int32_t> tokens;   // tokens to run this step (a prompt chunk, or the 1 last token for decode)
  int64_t pos0 = 0;              // position of tokens[0]
  const int32_t* pages = nullptr;  // page table; covers pos0 + tokens.size() positions (valid until next schedule())
  bool sample = false;           // true when this step produces the next token (last prompt chunk, or decode)
  // Decode with speculation: tokens[1..] are drafted (tokens[0] is the last token). The step
  // samples row 0, and row i + 1 only while the token sampled at row i equals tokens[i + 1]; every
  // row that matched, and the first that did not, produce a token (a StepResult each).
  int64_t n_draft = 0;
  // The drafts were taken from the request's predicted output (OpenAI's 'prediction'), not left to
  // the draft model to fill (STANDALONE, NEXTN): their runners leave them as they are.
  bool drafts_given = false;
  bool decode = false;  // a running request's next token (and drafts), not a prompt chunk
};

// Order of `seqs`: every decode first, in arrival order, then every prefill chunk, in arrival order.
struct ScheduledBatch {
  std::vector<ScheduledSeq> seqs;
  int64_t n_tokens = 0;
  bool has_prefill = false;
  std::vector<uint64_t> preempted;  // requests pushed back to waiting this step (KV full, or priority)
};

// One per seq with sample == true in the last batch, in the same order.
struct StepResult {
  uint64_t id = 0;
  int32_t token = 0;
  Finish finish = Finish::kNone;  // set by commit(): the finish rules' verdict on `token`
  // Set by commit(): a token verified after its request's finish in the same step (an EOS or the
  // length reached at an earlier row): not part of the output.
  bool dropped = false;
};

struct SchedulerStats {
  int64_t pages_used = 0;   // includes pages only the prefix cache holds
  int64_t pages_total = 0;
  int64_t cached_pages = 0;  // pages in the prefix tree
  int64_t prefix_hit_tokens = 0;    // cumulative
  int64_t prefix_query_tokens = 0;  // cumulative
  int64_t preemptions = 0;          // cumulative
  int64_t evicted_pages = 0;        // cumulative
  int64_t waiting_tokens = 0;       // tokens of the waiting requests (prompt, and output so far when preempted)
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& cfg, KVPool& pool, FinishRules rules = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Takes a new request (its prompt in st.tokens, its output budget in st.max_new). False when
  // prompt + max_new can never fit the pool (the caller fails the request; the state is dropped).
  // Throws dpserve::Error for an empty prompt, max_new < 1 or an id already known.
  bool add(RequestState st);
  // Drops the request: its pages are freed now (full pages go to the prefix cache). Unknown ids are
  // ignored (the request may have finished already).
  void abort(uint64_t id);
  void abort_all();
  // Drops every prefix-cache page no request holds (SGLang's /flush_cache).
  void flush_prefix_cache();
  // Drops LoRA slot `lora`'s prefix subtree (the adapter was unloaded); returns the pages dropped.
  int64_t drop_lora_prefix(int32_t lora);
  // Forms this step's batch and allocates its pages; preempts the newest requests if KV runs out.
  ScheduledBatch schedule();
  // Applies the last schedule(): advances every scheduled sequence, appends the sampled tokens (a
  // sequence with drafts: its 1..n_draft + 1 results, consecutive, in order; the KV of the rows
  // past them is left to be overwritten),
  // sets each result's finish from the finish rules and retires the requests that finished (full
  // pages into the prefix cache, the rest freed; their states are gone afterwards). Returns the
  // results with their finish set.
  std::vector<StepResult> commit(std::vector<StepResult> results);

  int64_t running() const { return int64_t(running_.size()); }
  int64_t waiting() const { return int64_t(waiting_.size()); }
  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  bool contains(uint64_t id) const { return reqs_.count(id) != 0; }
  // The state of a running or waiting request; null once it has ended (or if unknown).
  RequestState* find(uint64_t id);
  // Tokens (prompt + generated so far) of every running and waiting request.
  int64_t tokens_in_flight() const;
  SchedulerStats stats() const;
  const SchedulerConfig& config() const { return cfg_; }
  // The prefix tree (null when the prefix cache is off): the on-disk prefix cache saves and
  // restores it between steps.
  RadixCache* prefix_cache() { return cache_.get(); }

 private:
  struct Req;

  bool grow(Req& r, int64_t new_len);        // page table covers new_len positions (evicting if needed)
  int64_t fit_len(Req& r, int64_t want_len);  // longest len <= want_len the pool can hold now
  void preempt(Req& r, ScheduledBatch& out);
  void preempt_for_priority(ScheduledBatch& out);  // SchedulerConfig::priority_preemption
  // Priority scheduling's rank of a request (smaller: more important; 0 for all without it), and
  // whether `a` is served before `b`: more important, then older. running_ is kept in this order, so
  // "newest" (the preemption victim) means the least important, then the newest.
  int64_t importance(const Req& r) const;
  bool first(const Req& a, const Req& b) const;
  void retire(Req& r);                       // cache the computed full pages, free the table
  void erase_running(const Req& r);
  Req* newest_unscheduled();
  void add_seq(Req& r, int64_t n, std::vector<ScheduledSeq>& dst);
  void order_waiting_by_prefix();            // lpm: longest cached prefix first
  void order_waiting_by_output();            // lof: largest max_new_tokens first
  void shuffle_waiting();                    // random
  // The tokens `r` drafts this step, within `budget` (draft tokens left for the step): from its
  // predicted output where that has them (`given` set), else by the speculative algorithm; empty
  // when neither applies or the request cannot use drafts. STANDALONE, NEXTN: placeholders for the
  // rows, which the step fills from the draft model before its forward pass.
  std::vector<int32_t> draft(Req& r, int64_t budget, bool& given);

  SchedulerConfig cfg_;
  FinishRules rules_;
  KVPool& pool_;
  int64_t page_size_;
  std::unique_ptr<RadixCache> cache_;           // null when the prefix cache is off
  std::map<uint64_t, std::unique_ptr<Req>> reqs_;  // by id
  std::vector<Req*> running_;                   // by arrival serial
  std::deque<Req*> waiting_;                    // admission order (preempted ones at the front)
  uint64_t next_serial_ = 0;
  int64_t preemptions_ = 0;
  // --schedule-policy random's generator: a fixed seed and one draw sequence, so every rank of a
  // group (each runs this scheduler on the same inputs) shuffles alike.
  uint64_t shuffle_state_ = 0x9e3779b97f4a7c15ull;

  // The last batch, for commit(): (id, tokens run, sample) of each seq, and its page tables.
  struct Ran {
    uint64_t id;
    int64_t n;
    bool sample;
    int64_t n_draft;
  };
  std::vector<Ran> last_;
  std::vector<std::vector<int32_t>> step_pages_;
};

}  // namespace dpserve
