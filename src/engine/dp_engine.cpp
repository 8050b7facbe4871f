#include "engine/dp_engine.h"

#include <spdlog/spdlog.h>

#include "core/check.h"

namespace dpserve {

class DpEngine::Stream : public RequestStream {
 public:
  Stream(uint64_t id, bool prompt_only, int32_t lora) : id_(id), prompt_only_(prompt_only), lora_(lora) {}
  uint64_t id() const override { return id_; }
  bool prompt_only() const { return prompt_only_; }
  int32_t lora() const { return lora_; }
  bool next(Response& out, std::chrono::milliseconds timeout) override {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, timeout, [&] { return !q_.empty(); })) return false;
    out = std::move(q_.front());
    q_.pop_front();
    return true;
  }
  void push(Response r) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(std::move(r));
    }
    cv_.notify_all();
  }

 private:
  uint64_t id_;
  bool prompt_only_;
  int32_t lora_;  // the adapter slot it runs with (an unload waits for none to use it)
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Response> q_;
};

DpEngine::DpEngine(EngineLimits lim)
    : lim_(lim),
      req_limits_{.vocab = lim.vocab, .context_length = lim.context_length, .kv_positions = lim.kv_positions,
                  .hidden = lim.hidden},
      router_(lim.dp_size, lim.method) {
  if (!lim_.lora) lim_.lora = std::make_shared<LoraRegistry>();
  req_limits_.lora = lim_.lora;
  stats_.groups.resize(size_t(lim.dp_size));
  gen_window_.resize(size_t(lim.dp_size));
  for (int g = 0; g < lim.dp_size; ++g) stats_.groups[size_t(g)].dp_rank = g;
}

DpEngine::~DpEngine() = default;

std::shared_ptr<RequestStream> DpEngine::enqueue(Request r) {
  std::vector<Request> one;
  one.push_back(std::move(r));
  return enqueue_together(std::move(one)).front();
}

std::vector<std::shared_ptr<RequestStream>> DpEngine::enqueue_together(std::vector<Request> rs) {
  struct Refusal {
    std::string err;
    bool fault = false, unavailable = false;
  };
  std::vector<Refusal> refused(rs.size());
  std::vector<std::shared_ptr<Stream>> streams(rs.size());
  // The guard that keeps a bad request off the ranks, whoever the caller is; the frontends check
  // the same limits first to name the field at fault.
  for (size_t i = 0; i < rs.size(); ++i)
    if (auto v = req_limits_.check(rs[i])) refused[i].err = v->message;
  bool any = false;
  {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < rs.size(); ++i) {
      Refusal& f = refused[i];
      const uint64_t id = next_id_++;
      streams[i] = std::make_shared<Stream>(id, rs[i].prompt_only, rs[i].lora);
      // Checked again under the lock an unload takes: a request resolved to an adapter that is
      // being unloaded (or was, its slot perhaps reused since) never reaches the ranks.
      if (f.err.empty() && rs[i].lora >= 0 && !lim_.lora->usable(rs[i].lora, rs[i].lora_generation))
        f.err = "the LoRA adapter the request names was unloaded";
      // Not the request's fault: a stopped engine (with the fault that stopped it) or a draining one.
      if (f.err.empty() && stopped_ && !stop_reason_.empty()) {
        f.err = "the engine stopped: " + stop_reason_;
        f.fault = true;
      } else if (f.err.empty() && (draining_ || stopped_)) {
        f.err = "the server is shutting down";
        f.unavailable = true;
      }
      if (f.err.empty()) {
        // Work arriving at an idle engine starts the stall clock (it may have slept for hours).
        if (streams_.empty()) last_progress_ = std::chrono::steady_clock::now();
        streams_[id] = streams[i];
        inbox_.push_back(Pending{id, std::move(rs[i])});
        any = true;
      }
    }
  }
  for (size_t i = 0; i < rs.size(); ++i) {
    if (refused[i].err.empty()) continue;
    // Decided here, before any broadcast: a bad request never reaches the ranks.
    Response resp;
    resp.id = streams[i]->id();
    resp.finished = true;
    resp.finish_reason = "error";
    resp.error = refused[i].err;
    resp.engine_fault = refused[i].fault;
    resp.engine_unavailable = refused[i].unavailable;
    streams[i]->push(std::move(resp));
  }
  if (any) cv_.notify_all();
  return {streams.begin(), streams.end()};
}

void DpEngine::cancel(uint64_t id) {
  {
    std::lock_guard lk(mu_);
    if (!streams_.count(id)) return;
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

void DpEngine::shutdown(std::chrono::milliseconds drain) {
  std::unique_lock lk(mu_);
  if (!draining_) {
    draining_ = true;
    drain_deadline_ = std::chrono::steady_clock::now() + drain;
  }
  cv_.notify_all();
  cv_.wait(lk, [&] { return stopped_; });
}

bool DpEngine::healthy() const {
  std::lock_guard lk(mu_);
  return !draining_ && !stopped_;
}

bool DpEngine::stalled() const {
  std::lock_guard lk(mu_);
  if (lim_.stall_seconds <= 0 || streams_.empty()) return false;
  return std::chrono::steady_clock::now() - last_progress_ > std::chrono::duration<double>(lim_.stall_seconds);
}

EngineStats DpEngine::stats() const {
  std::lock_guard lk(mu_);
  EngineStats out = stats_;
  // Computed when asked, so a group that stopped generating reads 0 once its last tokens leave the
  // window, with no step needed to update it.
  const auto since = std::chrono::steady_clock::now() - kGenThroughputWindow;
  for (size_t g = 0; g < gen_window_.size() && g < out.groups.size(); ++g) {
    int64_t tokens = 0;
    for (const auto& [t, n] : gen_window_[g])
      if (t > since) tokens += n;
    out.groups[g].gen_throughput = double(tokens) / std::chrono::duration<double>(kGenThroughputWindow).count();
  }
  return out;
}

bool DpEngine::flush_cache() {
  {
    std::lock_guard lk(mu_);
    if (!inbox_.empty() || !streams_.empty() || draining_ || stopped_) return false;
    flush_pending_ = true;
  }
  cv_.notify_all();
  return true;
}

StepControl DpEngine::next_step(bool idle, std::chrono::milliseconds max_idle_wait) {
  std::unique_lock lk(mu_);
  if (idle) {
    // Nothing runs anywhere: sleep until a request, a cancel, a cache flush or shutdown arrives, or until the
    // heartbeat is due (then the message goes out empty).
    auto ready = [&] {
      return !inbox_.empty() || !cancels_.empty() || draining_ || flush_pending_ || !lora_ops_.empty();
    };
    if (max_idle_wait.count() > 0)
      cv_.wait_for(lk, max_idle_wait, ready);
    else
      cv_.wait(lk, ready);
  }
  StepControl c;
  c.step = ++step_;
  c.flush_cache = std::exchange(flush_pending_, false);
  // One adapter change per step, applied by every rank before the step's requests; the next waits
  // for this one's outcome (on_lora_change, called in the same step).
  if (!lora_inflight_ && !lora_ops_.empty()) {
    lora_inflight_ = std::move(lora_ops_.front());
    lora_ops_.pop_front();
    if (lora_inflight_->load) {
      c.lora_load_slot = lora_inflight_->slot;
      c.lora_load_path = lora_inflight_->path;
    } else {
      c.lora_unload_slot = lora_inflight_->slot;
    }
  }
  int64_t taken = 0;
  while (!inbox_.empty() && taken < lim_.max_new_requests_per_step) {
    Pending p = std::move(inbox_.front());
    inbox_.pop_front();
    NewRequest nr;
    nr.id = p.id;
    const int64_t n = p.req.input_embeds_rows > 0 ? p.req.input_embeds_rows : int64_t(p.req.input_ids.size());
    nr.group = router_.assign(p.id, n, p.req.dp_group);
    nr.req = std::move(p.req);
    c.new_requests.push_back(std::move(nr));
    ++taken;
  }
  c.cancels.swap(cancels_);
  if (draining_) {
    const bool late = std::chrono::steady_clock::now() >= drain_deadline_;
    if (late) {
      // Past the drain deadline: abort whatever is still in flight (queued ones included).
      for (auto& [id, s] : streams_) c.cancels.push_back(id);
    }
    // Streams still open after the deadline are ended by mark_stopped() once the loop exits.
    c.shutdown = streams_.empty() || late;
    shutdown_sent_ |= c.shutdown;
  }
  return c;
}

void DpEngine::on_reports(std::vector<GroupReport>& reports) {
  std::vector<std::pair<std::shared_ptr<Stream>, Response>> deliveries;
  {
    std::lock_guard lk(mu_);
    ++stats_.steps_total;
    last_progress_ = std::chrono::steady_clock::now();
    for (auto& rep : reports) {
      if (rep.group < 0 || rep.group >= lim_.dp_size) continue;
      GroupStats& gs = stats_.groups[size_t(rep.group)];
      const int64_t generated_before = stats_.generation_tokens_total;
      gs.running = rep.running;
      gs.waiting = rep.waiting;
      gs.kv_pages_used = rep.pages_used;
      gs.kv_bytes_per_page = lim_.kv_bytes_per_page;
      gs.kv_pages_total = rep.pages_total;
      gs.prefix_hit_tokens = rep.prefix_hit_tokens;
      gs.prefix_query_tokens = rep.prefix_query_tokens;
      gs.preemptions = rep.preemptions;
      gs.kv_pages_cached = rep.cached_pages;
      gs.waiting_tokens = rep.waiting_tokens;
      for (auto& o : rep.outs) {
        auto it = streams_.find(o.id);
        if (it == streams_.end()) continue;
        Response r;
        r.id = o.id;
        r.dp_rank = rep.group;
        r.prompt_tokens = o.prompt_tokens;
        r.cached_tokens = o.cached_tokens;
        r.prompt = std::move(o.prompt);
        r.embedding = std::move(o.embedding);
        r.scores = std::move(o.scores);
        r.spec_drafted = o.spec_drafted;
        r.spec_accepted = o.spec_accepted;
        if (o.spec_predicted) {
          r.predicted_drafted = o.spec_drafted;
          r.predicted_accepted = o.spec_accepted;
        }
        if (o.spec_drafted > 0) {
          stats_.spec_draft_tokens_total += o.spec_drafted;
          stats_.spec_accepted_tokens_total += o.spec_accepted;
          ++stats_.spec_verify_steps_total;
        }
        if (o.has_token) {
          r.tokens.push_back(std::move(o.tok));
          router_.on_token(o.id);
          // A pooled input (embedding, rerank score) samples one token only because its last row is
          // computed anyway; nothing is generated, so it counts as an output, not a token.
          // A max_tokens 0 request's token is dropped by the frontend: not generated for anyone either.
          if (!r.embedding.empty() || !r.scores.empty())
            ++stats_.pooled_outputs_total;
          else if (!it->second->prompt_only())
            ++stats_.generation_tokens_total;
        }
        // A request's tokens of one step (speculation verifies several) travel as one delivery.
        if (!deliveries.empty() && deliveries.back().second.id == o.id && !deliveries.back().second.finished &&
            deliveries.back().second.prompt.empty() &&
            r.prompt.empty() && r.embedding.empty() && r.scores.empty()) {
          Response& prev = deliveries.back().second;
          for (auto& t : r.tokens) prev.tokens.push_back(std::move(t));
          prev.spec_drafted += r.spec_drafted;
          prev.spec_accepted += r.spec_accepted;
          prev.predicted_drafted += r.predicted_drafted;
          prev.predicted_accepted += r.predicted_accepted;
          r = std::move(prev);
          deliveries.pop_back();
        }
        if (o.finish != Finish::kNone) {
          r.finished = true;
          r.finish_reason = finish_reason(o.finish);
          if (o.finish == Finish::kStopToken && !r.tokens.empty()) r.matched_token = r.tokens.back().token;
          r.error = o.error;
          router_.on_finished(o.id);
          ++stats_.requests_finished_total;
          stats_.prompt_tokens_total += o.prompt_tokens;
          deliveries.push_back({it->second, std::move(r)});
          streams_.erase(it);
        } else {
          deliveries.push_back({it->second, std::move(r)});
        }
      }
      auto& window = gen_window_[size_t(rep.group)];
      if (stats_.generation_tokens_total > generated_before)
        window.emplace_back(last_progress_, stats_.generation_tokens_total - generated_before);
      while (!window.empty() && window.front().first <= last_progress_ - kGenThroughputWindow) window.pop_front();
    }
  }
  for (auto& [s, r] : deliveries) s->push(std::move(r));
}

void DpEngine::reject(const std::vector<NewRequest>& requests, const std::string& why) {
  std::vector<std::pair<std::shared_ptr<Stream>, Response>> deliveries;
  {
    std::lock_guard lk(mu_);
    for (const NewRequest& nr : requests) {
      auto it = streams_.find(nr.id);
      if (it == streams_.end()) continue;
      router_.on_finished(nr.id);
      Response r;
      r.id = nr.id;
      r.finished = true;
      r.finish_reason = "error";
      r.error = why;
      deliveries.push_back({it->second, std::move(r)});
      streams_.erase(it);
    }
  }
  for (auto& [s, r] : deliveries) s->push(std::move(r));
}

LoraChange DpEngine::run_lora_op(std::unique_lock<std::mutex>& lk, const std::shared_ptr<LoraOp>& op) {
  lora_ops_.push_back(op);
  cv_.notify_all();
  lora_cv_.wait(lk, [&] { return op->done; });
  return op->result;
}

LoraChange DpEngine::load_lora(const std::string& name, const std::string& path) {
  std::unique_lock lk(mu_);
  if (draining_ || stopped_) return {503, "the server is shutting down"};
  auto op = std::make_shared<LoraOp>();
  op->load = true;
  op->path = path;
  if (std::string why = lim_.lora->begin_load(name, path, op->slot); !why.empty()) return {400, why};
  return run_lora_op(lk, op);
}

LoraChange DpEngine::unload_lora(const std::string& name) {
  std::unique_lock lk(mu_);
  if (draining_ || stopped_) return {503, "the server is shutting down"};
  const auto a = lim_.lora->find(name);
  if (!a) return {404, fmt::format("The LoRA adapter '{}' cannot be found (it is not loaded)", name)};
  // Under mu_, which enqueue takes too: no request can start using it between this check and the
  // unload below.
  int64_t users = 0;
  for (const auto& [id, s] : streams_) users += s->lora() == a->slot;
  if (users > 0)
    return {409, fmt::format("The LoRA adapter '{}' is in use by {} queued or running request(s); unload it once "
                             "they finish",
                             name, users)};
  auto op = std::make_shared<LoraOp>();
  op->slot = *lim_.lora->begin_unload(name);
  return run_lora_op(lk, op);
}

void DpEngine::on_lora_change(bool ok, const std::string& error) {
  {
    std::lock_guard lk(mu_);
    if (!lora_inflight_) return;
    std::shared_ptr<LoraOp> op = std::exchange(lora_inflight_, nullptr);
    if (op->load)
      lim_.lora->end_load(op->slot, ok);
    else
      lim_.lora->end_unload(op->slot);
    op->result = ok ? LoraChange{} : LoraChange{400, error};
    op->done = true;
  }
  lora_cv_.notify_all();
}

void DpEngine::mark_stopped(const std::string& why) {
  std::map<uint64_t, std::shared_ptr<Stream>> left;
  {
    std::lock_guard lk(mu_);
    // Adapter changes not done: the ranks stop, so nothing will serve them.
    if (lora_inflight_) lora_ops_.push_front(std::exchange(lora_inflight_, nullptr));
    for (auto& op : lora_ops_) {
      if (op->load)
        lim_.lora->end_load(op->slot, false);
      else
        lim_.lora->end_unload(op->slot);
      op->result = LoraChange{503, "the engine stopped before the adapter change took effect"};
      op->done = true;
    }
    lora_ops_.clear();
    lora_cv_.notify_all();
    stopped_ = true;
    stop_reason_ = why;
    left.swap(streams_);
    // If the step loop still runs (the watchdog ends streams first), its next step shuts it down.
    draining_ = true;
    drain_deadline_ = std::chrono::steady_clock::now();
  }
  for (auto& [id, s] : left) {
    Response r;
    r.id = id;
    r.finished = true;
    r.finish_reason = why.empty() ? "abort" : "error";
    r.error = why;
    r.engine_fault = !why.empty();
    s->push(std::move(r));
  }
  cv_.notify_all();
}

}  // namespace dpserve
