#include "server/generation.h"

#include <algorithm>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/metrics.h"
#include "server/request_registry.h"

namespace dpserve {

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::optional<int32_t>& thread_default_priority() {
  thread_local std::optional<int32_t> priority;
  return priority;
}

ChoiceRun::ChoiceRun(Engine& engine, const Tokenizer& tok, Request r, const GenSpec& spec, Metrics* metrics,
                     RequestRegistry* registry, const std::string& owner, Clock::time_point arrival,
                     std::string log_prompt, bool deferred)
    : engine_(engine),
      metrics_(metrics),
      registry_(registry),
      dec_(tok, spec.skip_special_tokens),
      stop_(spec.stop),
      stop_regex_(spec.stop_regex),
      arrival_(arrival),
      last_token_(arrival) {
  // The prompt's last token gives the decoder its context (SentencePiece drops the space after BOS).
  if (!r.input_ids.empty()) dec_.push(r.input_ids.back());
  prompt_tokens_ = r.input_ids.empty() ? r.input_embeds_rows : int64_t(r.input_ids.size());
  std::string rid = r.rid;
  log_ = spec.log_requests;
  prompt_only_ = spec.prompt_only;
  keep_matched_token_text_ = spec.no_stop_trim;
  deferred_ = deferred;
  log_prompt_ = std::move(log_prompt);
  rid_ = rid;
  has_images_ = !r.images.empty();
  owner_ = owner;
  r.prompt_only = prompt_only_;
  pending_ = std::move(r);
  if (!deferred) start();
}

void ChoiceRun::start(int32_t dp_group) {
  if (stream_ || finished_) return;
  if (dp_group >= 0) pending_.dp_group = dp_group;  // (else the request's own: data_parallel_rank or -1)
  stream_ = engine_.enqueue(std::move(pending_));
  pending_ = Request{};
  id_ = stream_->id();
  if (registry_) registry_->add(id_, rid_, owner_);
}

ChoiceRun::~ChoiceRun() {
  if (!stream_) return;
  if (!finished_) engine_.cancel(id_);
  if (has_images_ && !ttft_s_ && metrics_ && metrics_->encoder) metrics_->encoder->take(id_);
  if (registry_) registry_->remove(id_);
}

// SGLang's stop_regex: searched in the whole output so far (stop strings are checked first, as
// there). The text is not trimmed: SGLang's trim looks for the pattern's own text in the output,
// which a regex's match is not, so the answer ends with the token that completed the match.
bool ChoiceRun::stop_regex_hit(const std::string& piece, ChoiceDelta& out) {
  if (!stop_regex_ || piece.empty()) return false;
  regex_text_ += piece;
  std::optional<std::string> m = stop_regex_->search(regex_text_);
  if (!m) return false;
  out.text += stop_.flush();  // a stop string's possible start, held back, is now plain text
  out.matched_stop = std::move(*m);
  return true;
}

void ChoiceRun::finish(ChoiceDelta& out, const std::string& reason) {
  finished_ = true;
  if (log_) {
    log_output_ += out.text;
    auto cut = [](const std::string& s) { return s.size() > 4096 ? s.substr(0, 4096) + "..." : s; };
    spdlog::info("request {} (rid {}): finish={} prompt_tokens={} completion_tokens={} prompt={:?} output={:?}", id_,
                 rid_, reason, prompt_tokens_, completion_tokens(), cut(log_prompt_), cut(log_output_));
  }
  out.finished = true;
  out.finish_reason = reason;
  if (metrics_) {
    metrics_->e2e_latency.observe(seconds(Clock::now() - arrival_));
    metrics_->count_finish(reason);
    metrics_->completion_tokens += completion_tokens();
    if (!prompt_shared_) metrics_->prompt_tokens += prompt_tokens_;
  }
  if (registry_ && stream_) registry_->remove(id_);
}

void ChoiceRun::abort(ChoiceDelta& out, const std::string& reason, const std::string& error, bool fault) {
  if (finished_) return;
  if (stream_) engine_.cancel(id_);
  out.text += stop_.flush();
  out.error = error;
  out.fault = fault;
  finish(out, reason);
}

bool ChoiceRun::poll(std::chrono::milliseconds timeout, ChoiceDelta& out) {
  if (finished_ || !stream_) return false;
  Response r;
  if (!stream_->next(r, timeout)) return false;
  const auto now = Clock::now();
  if (r.prompt_tokens > 0) prompt_tokens_ = r.prompt_tokens;
  cached_tokens_ = std::max(cached_tokens_, r.cached_tokens);
  dp_rank_ = r.dp_rank;
  if (r.spec_drafted > 0) {
    ++spec_verify_ct_;
    spec_drafted_ += r.spec_drafted;
    spec_accepted_ += r.spec_accepted;
    predicted_drafted_ += r.predicted_drafted;
    predicted_accepted_ += r.predicted_accepted;
  }
  // Prompt logprobs come in pieces (one per prefill chunk) ahead of the first token; they are handed
  // out together, with the first token or the end, so a choice's first piece holds all of them.
  prompt_lps_.insert(prompt_lps_.end(), std::make_move_iterator(r.prompt.begin()),
                     std::make_move_iterator(r.prompt.end()));
  if (prompt_only_) r.tokens.clear();  // max_tokens 0: the one token the engine made is not part of the answer
  if (r.tokens.empty() && !r.finished) return false;  // nothing to tell yet
  out.prompt = std::move(prompt_lps_);
  prompt_lps_.clear();
  if (!r.tokens.empty() && output_ids_.empty()) {
    ttft_s_ = seconds(now - arrival_);
    if (has_images_ && metrics_ && metrics_->encoder) encoder_s_ = metrics_->encoder->take(id_);
  }
  if (!r.tokens.empty() && metrics_) {
    if (output_ids_.empty()) {
      metrics_->time_to_first_token.observe(seconds(now - arrival_));
      for (size_t i = 1; i < r.tokens.size(); ++i) metrics_->inter_token_latency.observe(0);
    } else {
      double per = seconds(now - last_token_) / double(r.tokens.size());
      for (size_t i = 0; i < r.tokens.size(); ++i) metrics_->inter_token_latency.observe(per);
    }
  }
  if (!r.tokens.empty()) last_token_ = now;
  struct LogText {  // what this delivery adds to the choice's text, for --log-requests
    ChoiceRun& run;
    ChoiceDelta& out;
    size_t from;
    ~LogText() {
      if (run.log_ && !run.finished_ && out.text.size() > from) run.log_output_ += out.text.substr(from);
    }
  } log_text{*this, out, out.text.size()};
  for (size_t k = 0; k < r.tokens.size(); ++k) {
    const TokenOut& t = r.tokens[k];
    output_ids_.push_back(t.token);
    out.tokens.push_back(t);
    // The EOS or stop_token_ids token that ended it is reported, but its text is not part of the
    // answer (SGLang's and vLLM's rule; SGLang's no_stop_trim keeps it).
    if (k + 1 == r.tokens.size() && r.matched_token >= 0 && !keep_matched_token_text_) continue;
    const std::string piece = dec_.push(t.token);
    out.text += stop_.feed(piece);
    if (stop_.matched()) {
      // The client's stop string ends the request here; whatever the engine made after it is dropped.
      out.matched_stop = stop_.matched_stop();
      if (keep_matched_token_text_) out.text += out.matched_stop;  // SGLang's no_stop_trim: up to its end
      engine_.cancel(id_);
      finish(out, "stop");
      return true;
    }
    if (stop_regex_hit(piece, out)) {
      engine_.cancel(id_);
      finish(out, "stop");
      return true;
    }
  }
  if (r.finished) {
    const std::string piece = dec_.flush();
    out.text += stop_.feed(piece);
    if (stop_.matched()) {
      out.matched_stop = stop_.matched_stop();
      if (keep_matched_token_text_) out.text += out.matched_stop;
      finish(out, "stop");
      return true;
    }
    if (stop_regex_hit(piece, out)) {
      finish(out, "stop");
      return true;
    }
    if (!prompt_only_) out.matched_token = r.matched_token;  // (max_tokens 0: the dropped token matched nothing)
    out.text += stop_.flush();
    out.error = r.error;
    out.fault = r.finish_reason == "error";
    out.engine_fault = r.engine_fault;
    out.engine_unavailable = r.engine_unavailable;
    std::string reason = r.finish_reason.empty() ? "stop" : r.finish_reason;
    // A later copy sent after the drain began belongs to a request admitted before it: it ends as
    // the drain ends running requests (abort), not as a request that came too late (a 503).
    if (deferred_ && r.engine_unavailable) {
      reason = "abort";
      out.fault = out.engine_unavailable = false;
    }
    // max_tokens 0: the prompt alone, ended by the length limit whatever the dropped token was.
    if (prompt_only_ && reason == "stop") reason = "length";
    finish(out, reason);
  }
  return true;
}

std::string image_timing_log(size_t images, const MaterializeTimes& times, Generation& gen) {
  if (images == 0 || gen.size() == 0) return "";
  const ChoiceRun& c = gen.choice(0);
  auto ms = [](double s) { return fmt::format("{:.3f}", s * 1e3); };
  const auto enc = c.encoder_seconds();
  const auto ttft = c.first_token_seconds();
  return fmt::format(" images={} image_decode_ms={} image_preprocess_ms={} image_encoder_ms={} prefill_ms={}",
                     images, ms(times.decode_s), ms(times.preprocess_s),
                     enc ? ms(*enc) : "n/a", ttft ? ms(std::max(0.0, *ttft - enc.value_or(0.0))) : "n/a");
}

Generation::Generation(Engine& engine, const Tokenizer& tok, const GenSpec& spec, Metrics* metrics,
                       RequestRegistry* registry, const std::function<std::string(size_t)>& rid_of,
                       const std::string& owner)
    : engine_(engine), n_(std::max<int32_t>(1, spec.n)) {
  const auto arrival = Clock::now();
  const size_t n_prompts = spec.prompts.empty() ? 1 : spec.prompts.size();
  // Input embeddings have no token ids for the prefix cache to match: their copies run side by side.
  const bool defer = n_ > 1 && !spec.prompts.empty();
  prompt_lps_.resize(n_prompts);
  copies_started_.assign(n_prompts, !defer);
  for (size_t p = 0; p < n_prompts; ++p) {
    for (int32_t c = 0; c < spec.n; ++c) {
      Request r = spec.base;
      if (!spec.priority_given && thread_default_priority()) r.priority = *thread_default_priority();
      if (!spec.loras.empty()) {
        const size_t k = spec.loras.size() == 1 ? 0 : p;
        r.lora = spec.loras[k];
        r.lora_generation = k < spec.lora_generations.size() ? spec.lora_generations[k] : 0;
      }
      const bool later = defer && c > 0;
      owes_prompt_.push_back(later && r.prompt_logprobs);
      if (later) r.prompt_logprobs = false;  // copy 0's entries are handed to it (on_delivery)
      if (!spec.prompts.empty()) {
        r.input_ids = spec.prompts[p];
        r.images = spec.images;
      } else {
        r.input_embeds = spec.input_embeds;
        r.input_embeds_rows = spec.input_embeds_rows;
      }
      if (r.params.seed && c > 0) r.params.seed = *r.params.seed + uint64_t(c);
      if (p < spec.token_ids_logprob.size()) r.token_ids_logprob = spec.token_ids_logprob[p];
      r.rid = rid_of(runs_.size());
      std::string shown = spec.log_requests ? (p < spec.prompt_texts.size() && !spec.prompt_texts[p].empty()
                                                      ? spec.prompt_texts[p]
                                                      : fmt::format("<{} token ids>", r.input_ids.size()))
                                            : std::string();
      runs_.push_back(std::make_unique<ChoiceRun>(engine, tok, std::move(r), spec, metrics, registry, owner, arrival,
                                                  std::move(shown), later));
      if (c > 0) runs_.back()->share_prompt();
    }
  }
}

void Generation::on_delivery(size_t i, ChoiceDelta& d) {
  const size_t p = i / size_t(n_), c = i % size_t(n_);
  const bool first_news = !d.tokens.empty() || !d.prompt.empty() || d.finished;
  if (c == 0 && first_news && !copies_started_[p]) {
    copies_started_[p] = true;
    prompt_lps_[p] = d.prompt;
    // Copy 0 cancelled or refused before its first token (/abort_request, the drain deadline, a fault):
    // its copies end the same way. They were never sent, so the cancel could not reach them.
    const bool ended_early =
        d.finished && d.tokens.empty() && (d.finish_reason == "abort" || d.finish_reason == "error");
    for (size_t k = i + 1; k < i + size_t(n_); ++k) {
      if (!ended_early) {
        runs_[k]->start(runs_[i]->dp_rank());  // (it leaves copies aborted meanwhile ended)
        continue;
      }
      if (runs_[k]->finished()) continue;
      ChoiceDelta e;
      runs_[k]->abort(e, d.finish_reason, d.error, d.fault);
      e.engine_fault = d.engine_fault;
      e.engine_unavailable = d.engine_unavailable;
      ended_copies_.emplace_back(k, std::move(e));
    }
  }
  if (c > 0 && owes_prompt_[i] && (!d.tokens.empty() || d.finished)) {
    d.prompt = prompt_lps_[p];
    owes_prompt_[i] = false;
  }
}

bool Generation::tell_ended_copies(const std::function<bool(size_t, const ChoiceDelta&)>& on_delta) {
  auto ended = std::move(ended_copies_);
  ended_copies_.clear();
  for (auto& [k, e] : ended)
    if (!on_delta(k, e)) return false;
  return true;
}

bool Generation::drive(const std::function<bool(size_t, const ChoiceDelta&)>& on_delta,
                       const std::function<bool()>& client_gone) {
  auto cancel_rest = [&](const std::string& reason, const std::string& error, bool tell) {
    for (size_t i = 0; i < runs_.size(); ++i) {
      if (runs_[i]->finished()) continue;
      ChoiceDelta d;
      runs_[i]->abort(d, reason, error, /*fault=*/tell);
      if (tell) on_delta(i, d);
    }
  };
  auto last_delivery = Clock::now();
  auto last_gone_check = Clock::now();
  for (;;) {
    bool any_left = false, got = false;
    for (size_t i = 0; i < runs_.size(); ++i) {
      if (runs_[i]->finished()) continue;
      any_left = true;
      ChoiceDelta d;
      if (runs_[i]->poll(std::chrono::milliseconds(0), d)) {
        got = true;
        on_delivery(i, d);
        if (!on_delta(i, d) || !tell_ended_copies(on_delta)) {
          cancel_rest("abort", "client disconnected", false);
          return false;
        }
      }
    }
    if (!any_left) return true;
    const auto now = Clock::now();
    // Checked while deltas keep coming too: a request of several choices (n > 1) almost always has
    // one to deliver, and a client gone (a batch's line cancelled or expired) went on being served
    // until its last choice ended.
    if (now - last_gone_check > std::chrono::milliseconds(50)) {
      last_gone_check = now;
      if (client_gone && client_gone()) {
        cancel_rest("abort", "client disconnected", false);
        return false;
      }
    }
    if (got) {
      last_delivery = now;
      continue;
    }
    // A stopped engine delivers nothing more: end the choices rather than hang the client.
    if (!engine_.healthy() && now - last_delivery > std::chrono::seconds(3)) {
      cancel_rest("abort", "the engine stopped", true);
      return true;
    }
    for (auto& r : runs_) {
      if (r->finished() || !r->started()) continue;
      ChoiceDelta d;
      size_t i = size_t(&r - &runs_[0]);
      if (r->poll(std::chrono::milliseconds(20), d)) {
        last_delivery = Clock::now();
        on_delivery(i, d);
        if (!on_delta(i, d) || !tell_ended_copies(on_delta)) {
          cancel_rest("abort", "client disconnected", false);
          return false;
        }
      }
      break;
    }
  }
}

}  // namespace dpserve
