#include "engine/scheduler.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "core/check.h"

namespace dpserve {

namespace {

constexpr std::pair<const char*, SchedulePolicy> kPolicyNames[] = {
    {"fcfs", SchedulePolicy::kFcfs}, {"lpm", SchedulePolicy::kLpm},
    {"lof", SchedulePolicy::kLof}, {"random", SchedulePolicy::kRandom}};

}  // namespace

SchedulePolicy parse_schedule_policy(const std::string& name) {
  for (const auto& [n, p] : kPolicyNames)
    if (name == n) return p;
  if (name == "dfs-weight" || name == "priority")
    fail("--schedule-policy {}: SGLang's policy '{}' is not implemented here (fcfs, lpm, lof and random are{})", name,
         name, name == "priority" ? "; --enable-priority-scheduling orders by the requests' priority" : "");
  fail("--schedule-policy {}: unknown policy (fcfs, lpm, lof or random)", name);
}

const char* schedule_policy_name(SchedulePolicy p) {
  for (const auto& [n, q] : kPolicyNames)
    if (q == p) return n;
  return "fcfs";
}

// The request's state plus what only scheduling needs.
struct Scheduler::Req {
  explicit Req(RequestState s) : st(std::move(s)) {}
  RequestState st;
  uint64_t serial = 0;              // arrival order: every tie and "newest" is decided by it
  PageTable table;                  // table.len = positions whose KV is computed
  bool running = false;
  bool decoding = false;            // prefill (or recompute after preemption) done
  bool admitted_once = false;
  bool looked_up = false;           // prefix lookup already counted in the hit statistics
  bool in_batch = false;            // scheduled in the step being formed
};

Scheduler::Scheduler(const SchedulerConfig& cfg, KVPool& pool, FinishRules rules)
    : cfg_(cfg), rules_(std::move(rules)), pool_(pool), page_size_(pool.page_size()) {
  if (cfg.max_running_requests < 1) fail("scheduler: max_running_requests must be >= 1 (got {})", cfg.max_running_requests);
  if (cfg.max_prefill_tokens < 1) fail("scheduler: max_prefill_tokens must be >= 1 (got {})", cfg.max_prefill_tokens);
  validate(cfg_.spec);
  if (cfg.enable_prefix_cache) cache_ = std::make_unique<RadixCache>(pool);
}

Scheduler::~Scheduler() {
  for (auto& [id, r] : reqs_) r->table.release(pool_);
  cache_.reset();
}

bool Scheduler::add(RequestState st) {
  const uint64_t id = st.id;
  if (st.tokens.empty() || st.prompt_len != int64_t(st.tokens.size())) fail("request {}: empty prompt", id);
  if (st.max_new < 1) fail("request {}: max_new_tokens must be >= 1 (got {})", id, st.max_new);
  if (reqs_.count(id)) fail("request {}: id already in use", id);
  // The last sampled token is never fed back, so a request writes at most prompt + max_new - 1 positions.
  int64_t positions = st.prompt_len + st.max_new - 1;
  if ((positions + page_size_ - 1) / page_size_ > pool_.n_pages()) return false;
  auto r = std::make_unique<Req>(std::move(st));
  r->serial = next_serial_++;
  waiting_.push_back(r.get());
  reqs_.emplace(id, std::move(r));
  return true;
}

void Scheduler::erase_running(const Req& r) {
  auto it = std::find(running_.begin(), running_.end(), &r);
  DP_CHECK(it != running_.end());
  running_.erase(it);
}

void Scheduler::retire(Req& r) {
  // Only positions whose KV was computed can be shared; the partial last page is freed.
  if (cache_) cache_->insert(r.st.tokens, r.table.pages, r.table.len / page_size_, r.st.req.lora, r.st.req.cache_salt);
  r.table.release(pool_);
}

void Scheduler::abort(uint64_t id) {
  auto it = reqs_.find(id);
  if (it == reqs_.end()) return;
  Req& r = *it->second;
  if (r.running) {
    erase_running(r);
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &r));
  }
  retire(r);
  reqs_.erase(it);
}

void Scheduler::abort_all() {
  while (!reqs_.empty()) abort(reqs_.begin()->first);
}

void Scheduler::flush_prefix_cache() {
  if (cache_) cache_->evict(pool_.n_pages());
}

int64_t Scheduler::drop_lora_prefix(int32_t lora) { return cache_ ? cache_->drop_lora(lora) : 0; }

bool Scheduler::grow(Req& r, int64_t new_len) {
  int64_t need = (new_len + page_size_ - 1) / page_size_ - int64_t(r.table.pages.size());
  if (need > pool_.free_pages() && cache_) cache_->evict(need - pool_.free_pages());
  return r.table.reserve(pool_, new_len);
}

int64_t Scheduler::fit_len(Req& r, int64_t want_len) {
  int64_t have = int64_t(r.table.pages.size());
  int64_t need = (want_len + page_size_ - 1) / page_size_ - have;
  if (need > pool_.free_pages() && cache_) cache_->evict(need - pool_.free_pages());
  if (need <= pool_.free_pages()) return want_len;
  return std::min(want_len, (have + pool_.free_pages()) * page_size_);
}

void Scheduler::preempt(Req& r, ScheduledBatch& out) {
  // With the prefix cache on, the computed full pages stay in the tree: the recompute will find
  // them again unless eviction needed them in the meantime.
  erase_running(r);
  retire(r);
  r.running = false;
  r.decoding = false;
  waiting_.push_front(&r);  // preempted newest-first, so the front ends up in arrival order
  out.preempted.push_back(r.st.id);
  ++preemptions_;
}

void Scheduler::preempt_for_priority(ScheduledBatch& out) {
  if (waiting_.empty() || running_.empty()) return;
  // The request admission will look at first: the most important waiting one (the earliest among equals).
  const Req* w = waiting_.front();
  for (const Req* r : waiting_)
    if (importance(*r) < importance(*w)) w = r;
  // Most steps end here: no running request is far enough below it (running_.back() is the least
  // important), so nothing below is counted, the prefix tree's walk least of all.
  if (importance(*running_.back()) - importance(*w) <= cfg_.priority_preemption_threshold) return;
  // What its first chunk needs, as admission would take it (a cached prefix aside, which only helps).
  int64_t chunk = std::min<int64_t>(int64_t(w->st.tokens.size()), cfg_.max_prefill_tokens);
  if (cfg_.chunked_prefill_size > 0) chunk = std::min(chunk, cfg_.chunked_prefill_size);
  const int64_t pages_needed = (chunk + page_size_ - 1) / page_size_;
  // Free pages, then (only when they are not enough: the tree walk is not free) what eviction could add.
  int64_t pages_free = pool_.free_pages();
  bool counted_evictable = false;
  auto blocked = [&](int64_t running, int64_t freed) {
    if (running >= cfg_.max_running_requests) return true;
    if (pages_needed > pages_free + freed && !counted_evictable && cache_) {
      pages_free += cache_->evictable_pages();
      counted_evictable = true;
    }
    return pages_needed > pages_free + freed;
  };
  const int64_t n_running = int64_t(running_.size());
  if (!blocked(n_running, 0)) return;
  // Victims from the least important (running_ is kept most important first), each less important
  // than `w` by more than the threshold; all of them or none, as SGLang does, so nothing is pushed
  // out for a request that still would not fit.
  std::vector<Req*> victims;
  int64_t freed = 0;
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (importance(**it) - importance(*w) <= cfg_.priority_preemption_threshold) break;
    victims.push_back(*it);
    freed += int64_t((*it)->table.pages.size());
    if (!blocked(n_running - int64_t(victims.size()), freed)) break;
  }
  if (victims.empty() || blocked(n_running - int64_t(victims.size()), freed)) return;
  for (Req* v : victims) preempt(*v, out);  // newest first: the front of waiting_ stays in arrival order
}

int64_t Scheduler::importance(const Req& r) const {
  if (!cfg_.priority_scheduling) return 0;
  return cfg_.low_priority_values_first ? int64_t(r.st.req.priority) : -int64_t(r.st.req.priority);
}

bool Scheduler::first(const Req& a, const Req& b) const {
  const int64_t ia = importance(a), ib = importance(b);
  return ia != ib ? ia < ib : a.serial < b.serial;
}

Scheduler::Req* Scheduler::newest_unscheduled() {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it)
    if (!(*it)->in_batch) return *it;
  return nullptr;
}

void Scheduler::add_seq(Req& r, int64_t n, std::vector<ScheduledSeq>& dst) {
  int64_t len = r.table.len;
  const std::vector<int32_t>& tokens = r.st.tokens;
  DP_CHECK(n >= 1 && len + n <= int64_t(tokens.size()));
  bool ok = grow(r, len + n);
  DP_CHECK(ok, "request {}: pages for {} positions", r.st.id, len + n);
  step_pages_.push_back(r.table.pages);
  ScheduledSeq s;
  s.id = r.st.id;
  s.state = &r.st;
  s.tokens.assign(tokens.begin() + len, tokens.begin() + len + n);
  s.pos0 = len;
  s.pages = step_pages_.back().data();  // inner buffers survive moves of step_pages_
  s.sample = len + n == int64_t(tokens.size());
  r.in_batch = true;
  dst.push_back(std::move(s));
}

std::vector<int32_t> Scheduler::draft(Req& r, int64_t budget, bool& given) {
  given = false;
  const SpeculativeConfig& sc = cfg_.spec;
  if (budget <= 0) return {};
  // A constrained request's rows would each need the mask of the state after the drafts before
  // them; it decodes a token at a time. The last token of the budget is the verified one.
  RequestState& st = r.st;
  if (st.matcher) return {};
  const int64_t room = std::min(budget, st.max_new - st.generated() - 1);
  if (room <= 0) return {};
  const bool model_drafts = sc.algorithm == SpecAlgorithm::kStandalone || sc.algorithm == SpecAlgorithm::kNextn;
  if (sc.prediction_drafts && !st.req.prediction.empty()) {
    // A predicted output drafts its own tokens (without a --speculative-algorithm, up to the default
    // draft length). Under a draft model, the model drafts where the prediction has nothing to
    // offer (the answer left it and its last tokens occur nowhere in it): each where it is better.
    const int64_t k = std::min(room, st.spec.allowed(sc.draft_cap(), &sc.row_cost));
    if (k <= 0) return {};
    const int64_t n_out = st.generated();
    const int64_t expect = st.prediction_at < 0 ? n_out : st.prediction_at + (n_out - st.prediction_out);
    int64_t at = -1;
    std::vector<int32_t> d = prediction_draft(st.req.prediction, st.tokens.data() + st.prompt_len, n_out, k,
                                              sc.ngram_min_window, sc.ngram_max_window, expect, &at);
    if (at >= 0) st.prediction_at = at, st.prediction_out = n_out;
    given = !d.empty();
    if (given || !model_drafts) return d;
  }
  if (!sc.enabled()) return {};
  const int64_t k = std::min(room, st.spec.allowed(sc.max_draft, &sc.row_cost));
  if (k <= 0) return {};
  if (model_drafts) {
    // The draft model reads token ids: prompt rows given as embeddings or image features have none.
    if (st.has_embeds() || st.has_images()) return {};
    return std::vector<int32_t>(size_t(k), 0);  // rows reserved here, drafted by the step (DraftRunner)
  }
  return ngram_draft(st.tokens, k, sc.ngram_min_window, sc.ngram_max_window);
}

ScheduledBatch Scheduler::schedule() {
  ScheduledBatch out;
  last_.clear();
  step_pages_.clear();
  // 0. A more important waiting request may take running requests' places (before the step's budgets
  // are counted from the running requests).
  if (cfg_.priority_scheduling && cfg_.priority_preemption) preempt_for_priority(out);
  const size_t priority_preempted = out.preempted.size();
  std::vector<ScheduledSeq> decodes, prefills;
  constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();
  int64_t total_left = cfg_.max_prefill_tokens;
  int64_t prefill_left = cfg_.chunked_prefill_size > 0 ? cfg_.chunked_prefill_size : kUnlimited;
  int64_t lp_rows_left = cfg_.max_prompt_logprob_rows > 0 ? cfg_.max_prompt_logprob_rows : kUnlimited;
  // A chunk of a request that still reports prompt logprobs is held to the row budget too.
  auto lp_room = [&](const Req& r, int64_t room) {
    return r.st.needs_prompt_logprobs() ? std::min(room, lp_rows_left) : room;
  };
  // Decodes are reserved their token first so a long prefill never starves them.
  int64_t pending_decodes = 0;
  for (Req* r : running_) {
    r->in_batch = false;
    if (r->decoding) ++pending_decodes;
  }
  // Speculation: drafts fill the step's decode rows up to max_step_rows (oldest requests first). A
  // step of many decodes is compute-bound already, where a draft costs a row's full price.
  int64_t drafts_left = cfg_.spec.max_step_rows > 0 ? std::max<int64_t>(0, cfg_.spec.max_step_rows - pending_decodes)
                                                    : kUnlimited;

  // 1. Running requests, oldest first. Everything already in the batch is older than the request at
  // hand, so a victim (the newest not yet scheduled) is newer than it or is the request itself.
  std::vector<Req*> snapshot = running_;
  for (Req* r : snapshot) {
    if (!r->running) continue;  // preempted by an older request this step
    if (r->decoding) {
      --pending_decodes;
      if (total_left <= 0) continue;  // token cap reached: decodes again next step
      // Drafts ride along only where their pages and the step's token cap allow without pushing
      // anything out; otherwise the request decodes one token as usual.
      bool given = false;
      std::vector<int32_t> drafts = draft(*r, std::min(drafts_left, total_left - 1 - pending_decodes), given);
      if (!drafts.empty()) {
        const int64_t k = int64_t(drafts.size());
        if (fit_len(*r, r->table.len + 1 + k) == r->table.len + 1 + k) {
          DP_CHECK(grow(*r, r->table.len + 1 + k));  // before add_seq, whose page copy then covers the drafts
          add_seq(*r, 1, decodes);
          ScheduledSeq& s = decodes.back();
          s.tokens.insert(s.tokens.end(), drafts.begin(), drafts.end());
          s.n_draft = k;
          s.drafts_given = given;
          s.decode = true;
          drafts_left -= k;
          total_left -= 1 + k;
          continue;
        }
      }
      bool ok = grow(*r, r->table.len + 1);
      while (!ok) {
        Req* v = newest_unscheduled();
        DP_CHECK(v != nullptr);
        if (v != r && v->decoding) --pending_decodes;
        preempt(*v, out);
        if (v == r) break;
        ok = grow(*r, r->table.len + 1);
      }
      if (!ok) continue;
      add_seq(*r, 1, decodes);
      decodes.back().decode = true;
      total_left -= 1;
    } else {
      int64_t room = lp_room(*r, std::min(prefill_left, total_left - pending_decodes));
      if (room <= 0) continue;
      int64_t want = std::min(int64_t(r->st.tokens.size()) - r->table.len, room);
      int64_t len = fit_len(*r, r->table.len + want);
      while (len <= r->table.len) {
        // A mid-prefill request only pushes out newer ones; if older ones hold the pool it waits
        // (it keeps its pages and its place), which cannot deadlock because the oldest always runs.
        Req* v = newest_unscheduled();
        if (v == nullptr || v == r) break;
        if (v->decoding) --pending_decodes;
        preempt(*v, out);
        len = fit_len(*r, r->table.len + want);
      }
      if (len <= r->table.len) continue;
      int64_t n = len - r->table.len;
      if (r->st.needs_prompt_logprobs()) lp_rows_left -= n;
      add_seq(*r, n, prefills);
      prefill_left -= n;
      total_left -= n;
    }
  }

  // Whether this step pushed requests out for want of KV (priority preemption makes room instead).
  const bool kv_preempted = out.preempted.size() > priority_preempted;
  if (cfg_.policy == SchedulePolicy::kLpm && !kv_preempted) order_waiting_by_prefix();
  if (cfg_.policy == SchedulePolicy::kLof) order_waiting_by_output();
  if (cfg_.policy == SchedulePolicy::kRandom) shuffle_waiting();
  // Priority outranks the policy's order; within a priority, that order stands (stable), preempted
  // requests still first.
  if (cfg_.priority_scheduling)
    std::stable_sort(waiting_.begin(), waiting_.end(),
                     [this](const Req* a, const Req* b) { return importance(*a) < importance(*b); });
  // 2. Admission in arrival order (preempted requests first), strictly first come first served:
  // the first request that does not fit stops admission so it is never overtaken. Nothing is admitted
  // in a step that had to preempt: the pool is full, and it would only readmit what was just pushed out.
  while (!kv_preempted && !waiting_.empty() && int64_t(running_.size()) < cfg_.max_running_requests) {
    Req* r = waiting_.front();
    int64_t room = lp_room(*r, std::min(prefill_left, total_left));
    if (room <= 0) break;
    DP_CHECK(r->table.pages.empty());
    int64_t n_tok = int64_t(r->st.tokens.size());
    // Prompt positions that still need logits must be computed: such a request takes nothing from
    // the prefix cache (its pages still go into it when it ends). A recompute after preemption, once
    // every prompt logprob was reported, uses the cache as usual.
    if (cache_ && !r->st.skips_prefix_cache()) {
      // Leave at least one token to run, so the last chunk has logits to sample from.
      bool count = !r->admitted_once && !r->looked_up;
      r->table.pages = cache_->match(r->st.tokens, (n_tok - 1) / page_size_, count, r->st.req.lora, r->st.req.cache_salt);
      r->looked_up = true;
    }
    r->table.len = int64_t(r->table.pages.size()) * page_size_;
    int64_t want = std::min(n_tok - r->table.len, room);
    int64_t len = fit_len(*r, r->table.len + want);
    if (len <= r->table.len) {
      r->table.release(pool_);
      break;
    }
    waiting_.pop_front();
    r->running = true;
    running_.insert(std::upper_bound(running_.begin(), running_.end(), r,
                                     [this](const Req* a, const Req* b) { return first(*a, *b); }),
                    r);
    if (!r->admitted_once) r->st.cached = r->table.len;
    r->admitted_once = true;
    int64_t n = len - r->table.len;
    if (r->st.needs_prompt_logprobs()) lp_rows_left -= n;
    add_seq(*r, n, prefills);
    prefill_left -= n;
    total_left -= n;
  }

  out.has_prefill = !prefills.empty();
  out.seqs = std::move(decodes);
  for (auto& s : prefills) out.seqs.push_back(std::move(s));
  for (const auto& s : out.seqs) {
    out.n_tokens += int64_t(s.tokens.size());
    last_.push_back(Ran{s.id, int64_t(s.tokens.size()), s.sample, s.n_draft});
  }
  return out;
}

void Scheduler::order_waiting_by_prefix() {
  // SGLang falls back to fcfs beyond 128 waiting (a tree walk each per step); so do we.
  if (!cache_ || waiting_.size() < 2 || waiting_.size() > 128) return;
  std::vector<std::pair<int64_t, Req*>> keyed;
  keyed.reserve(waiting_.size());
  for (Req* r : waiting_) {
    const int64_t n_tok = int64_t(r->st.tokens.size());
    // Preempted requests keep the front (they already waited their turn once); a request whose
    // prompt logprobs are still owed takes nothing from the cache, so its match counts nothing.
    const int64_t key = r->admitted_once                ? std::numeric_limits<int64_t>::max()
                        : r->st.skips_prefix_cache()    ? 0
                                                        : cache_->cached_prefix_pages(r->st.tokens, (n_tok - 1) / page_size_, r->st.req.lora, r->st.req.cache_salt);
    keyed.emplace_back(key, r);
  }
  // Stable: equal matches keep arrival order, and every rank of the group sorts the same tree's answers.
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < keyed.size(); ++i) waiting_[i] = keyed[i].second;
}

void Scheduler::order_waiting_by_output() {
  // Stable: equal lengths keep arrival order; preempted requests keep the front.
  std::stable_sort(waiting_.begin(), waiting_.end(), [](const Req* a, const Req* b) {
    if (a->admitted_once != b->admitted_once) return a->admitted_once;
    return !a->admitted_once && a->st.req.params.max_new_tokens > b->st.req.params.max_new_tokens;
  });
}

void Scheduler::shuffle_waiting() {
  // Fisher-Yates over the requests never admitted (preempted ones keep the front, in their order),
  // drawing from splitmix64: the same numbers on every rank and every build, unlike std::shuffle.
  auto next = [this] {
    uint64_t z = (shuffle_state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  size_t first = 0;
  while (first < waiting_.size() && waiting_[first]->admitted_once) ++first;
  for (size_t i = waiting_.size(); i > first + 1; --i) {
    const size_t j = first + size_t(next() % (i - first));
    std::swap(waiting_[i - 1], waiting_[j]);
  }
}

std::vector<StepResult> Scheduler::commit(std::vector<StepResult> results) {
  // Validate before touching any state, so a step-loop bug surfaces as an error, not a corrupt table:
  // every sampled seq whose request still exists (not aborted meanwhile) has its results, in order,
  // one of them, or 1..n_draft + 1 with drafts.
  size_t j = 0;
  for (const Ran& ran : last_) {
    if (!ran.sample || !reqs_.count(ran.id)) continue;
    while (j < results.size() && !reqs_.count(results[j].id)) ++j;  // aborted after schedule()
    int64_t got = 0;
    while (j < results.size() && results[j].id == ran.id) ++got, ++j;
    if (got < 1) fail("scheduler commit: sampled sequence {} of the last step got no result", ran.id);
    if (got > 1 + ran.n_draft)
      fail("scheduler commit: {} results for request {}, which verified {} drafted tokens", got, ran.id, ran.n_draft);
  }
  while (j < results.size() && !reqs_.count(results[j].id)) ++j;
  if (j != results.size())
    fail("scheduler commit: result for request {} does not match the sampled sequences of the last step",
         results[j].id);

  std::map<uint64_t, int64_t> drafted;  // requests that verified drafts: how many
  for (const Ran& ran : last_) {
    auto it = reqs_.find(ran.id);
    if (it == reqs_.end()) continue;
    Req& r = *it->second;
    if (ran.n_draft > 0) {
      drafted[ran.id] = ran.n_draft;  // its KV advances with each token taken, below
      continue;
    }
    r.table.len += ran.n;
    // The rows just run reported the logprobs of the prompt positions after them (RankWorker).
    if (r.st.req.prompt_logprobs)
      r.st.prompt_lp_next = std::max(r.st.prompt_lp_next, std::min(r.st.prompt_len, r.table.len + 1));
    // The prompt (or a recompute's input) is now in the cache: its full pages go into the tree at once,
    // not when the request ends, so requests sharing the prefix (n choices of one prompt, a system
    // prompt) admitted while this one decodes find them. The request keeps its own references.
    if (cache_ && !r.decoding && r.table.len == int64_t(r.st.tokens.size()))
      cache_->insert(r.st.tokens, r.table.pages, r.table.len / page_size_, r.st.req.lora, r.st.req.cache_salt);
    DP_CHECK(r.table.len <= int64_t(r.st.tokens.size()) && r.table.len <= int64_t(r.table.pages.size()) * page_size_);
  }
  last_.clear();
  std::map<uint64_t, int64_t> taken;  // tokens taken per request with drafts
  for (size_t i = 0; i < results.size(); ++i) {
    StepResult& res = results[i];
    auto it = reqs_.find(res.id);
    if (it == reqs_.end()) {
      // Finished at an earlier row of this step: the rest of its verified chain is not output.
      res.dropped = drafted.count(res.id) != 0;
      continue;
    }
    Req& r = *it->second;
    auto d = drafted.find(res.id);
    if (d != drafted.end()) {
      // Row k's token is taken: the KV of the input at row k (the last token, then drafts) is valid.
      r.table.len += 1;
      ++taken[res.id];
      DP_CHECK(r.table.len <= int64_t(r.table.pages.size()) * page_size_);
    }
    r.st.tokens.push_back(res.token);
    r.decoding = true;
    res.finish = rules_.after_token(r.st);
    const bool last_of_chain = i + 1 == results.size() || results[i + 1].id != res.id;
    if (d != drafted.end() && (last_of_chain || res.finish != Finish::kNone)) {
      // Every token but the last of the chain matched its draft (that is why the next row counts).
      const int64_t t = taken[res.id];
      r.st.spec.on_verified(d->second, last_of_chain ? t - 1 : t, cfg_.spec.draft_cap());
    }
    if (res.finish != Finish::kNone) {
      erase_running(r);
      retire(r);
      reqs_.erase(it);
    }
  }
  return results;
}

int64_t Scheduler::tokens_in_flight() const {
  int64_t n = 0;
  for (const auto& [id, r] : reqs_) n += int64_t(r->st.tokens.size());
  return n;
}

RequestState* Scheduler::find(uint64_t id) {
  auto it = reqs_.find(id);
  return it == reqs_.end() ? nullptr : &it->second->st;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.pages_total = pool_.n_pages();
  s.pages_used = pool_.n_pages() - pool_.free_pages();
  s.preemptions = preemptions_;
  for (const Req* r : waiting_) s.waiting_tokens += int64_t(r->st.tokens.size());
  if (cache_) {
    s.cached_pages = cache_->cached_pages();
    s.prefix_hit_tokens = cache_->hit_tokens();
    s.prefix_query_tokens = cache_->query_tokens();
    s.evicted_pages = cache_->evicted_pages();
  }
  return s;
}

}  // namespace dpserve
