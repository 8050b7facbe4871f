// Drives the engine streams behind one HTTP request: prompts x n choices, each turned from token ids
// into text (streaming detokenizer, stop strings) with its finish reason and token counts.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/request_parse.h"
#include "server/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

class Metrics;
class RequestRegistry;

// The priority of the requests started on this thread that set none (GenSpec::priority_given
// false): a batch line's, under --enable-priority-scheduling (nullopt: the request's own, 0).
std::optional<int32_t>& thread_default_priority();

using Clock = std::chrono::steady_clock;

// What one choice produced since the last delivery.
struct ChoiceDelta {
  std::string text;              // final text only (held back while it may begin a stop string)
  std::vector<TokenOut> tokens;  // tokens consumed (those after a matched stop string are dropped)
  // Prompt logprobs (Request::prompt_logprobs): positions 1.. of the prompt, all in one delta, the
  // one that carries the first token or the end.
  std::vector<TokenOut> prompt;
  bool finished = false;
  std::string finish_reason;     // stop, length, abort, error
  std::string matched_stop;      // the stop string that ended it, if any
  int32_t matched_token = -1;    // else the EOS / stop_token_ids token that ended it (Response::matched_token)
  std::string error;
  // It ended because something failed (the engine refused or lost it, or stopped), not because it
  // was done or cancelled: streams tell the client with an error event.
  bool fault = false;
  // The engine, not the request, failed (Response::engine_fault: the watchdog, a lost rank): a 5xx.
  bool engine_fault = false;
  // The engine was stopping when the request came (Response::engine_unavailable): a 503.
  bool engine_unavailable = false;
};

class ChoiceRun {
 public:
  // Enqueues `r` and registers it (by r.rid, for `owner`) while it runs. `log_prompt`: with
  // spec.log_requests, the prompt as the log shows it. `deferred`: held until start().
  ChoiceRun(Engine& engine, const Tokenizer& tok, Request r, const GenSpec& spec, Metrics* metrics,
            RequestRegistry* registry, const std::string& owner, Clock::time_point arrival,
            std::string log_prompt = {}, bool deferred = false);
  ~ChoiceRun();
  ChoiceRun(const ChoiceRun&) = delete;
  ChoiceRun& operator=(const ChoiceRun&) = delete;

  // Takes the next delivery (waits up to `timeout`); false when nothing arrived.
  bool poll(std::chrono::milliseconds timeout, ChoiceDelta& out);
  // Ends the choice here with `reason` and tells the engine to drop it.
  void abort(ChoiceDelta& out, const std::string& reason, const std::string& error = "", bool fault = false);

  // Enqueues a deferred choice (`dp_group` >= 0: in that DP group); a no-op once started.
  void start(int32_t dp_group = -1);
  bool started() const { return stream_ != nullptr; }
  // Copies 1.. of an n > 1 prompt: the prompt is copy 0's, so dpserve_http_prompt_tokens_total counts
  // it once, as usage does.
  void share_prompt() { prompt_shared_ = true; }

  bool finished() const { return finished_; }
  uint64_t id() const { return id_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t cached_tokens() const { return cached_tokens_; }
  // Speculative decoding: steps that verified drafted tokens for this choice, the drafted tokens
  // they checked, and how many of those matched.
  int64_t spec_verify_ct() const { return spec_verify_ct_; }
  int64_t spec_draft_tokens() const { return spec_drafted_; }
  int64_t spec_accepted_tokens() const { return spec_accepted_; }
  // Of those, the drafts taken from the predicted output (usage's accepted / rejected_prediction_tokens).
  int64_t predicted_draft_tokens() const { return predicted_drafted_; }
  int64_t predicted_accepted_tokens() const { return predicted_accepted_; }
  int64_t completion_tokens() const { return int64_t(output_ids_.size()); }
  int32_t dp_rank() const { return dp_rank_; }
  const std::vector<int32_t>& output_ids() const { return output_ids_; }
  // Seconds from enqueueing to the first token (nullopt before it); the vision tower's seconds for
  // this choice's images when rank 0 ran them (its own DP group), taken at the first token.
  std::optional<double> first_token_seconds() const { return ttft_s_; }
  std::optional<double> encoder_seconds() const { return encoder_s_; }

 private:
  void finish(ChoiceDelta& out, const std::string& reason);
  // Appends a piece of output text and tells whether a stop_regex pattern now matches (then
  // `out` has the held-back text and matched_stop set).
  bool stop_regex_hit(const std::string& piece, ChoiceDelta& out);

  Engine& engine_;
  Metrics* metrics_;
  RequestRegistry* registry_;
  std::shared_ptr<RequestStream> stream_;  // null while deferred
  Request pending_;                        // a deferred choice's request, until start()
  std::string owner_;
  uint64_t id_ = 0;
  IncrementalDecoder dec_;
  StopMatcher stop_;
  std::shared_ptr<const StopRegex> stop_regex_;  // GenSpec::stop_regex
  std::string regex_text_;                       // the output's text so far, while stop_regex_ is set
  Clock::time_point arrival_, last_token_;
  bool finished_ = false;
  int64_t prompt_tokens_ = 0, cached_tokens_ = 0;
  int64_t spec_verify_ct_ = 0, spec_drafted_ = 0, spec_accepted_ = 0;
  int64_t predicted_drafted_ = 0, predicted_accepted_ = 0;
  int32_t dp_rank_ = 0;
  std::vector<int32_t> output_ids_;
  bool log_ = false;
  std::string log_prompt_, log_output_, rid_;
  bool prompt_shared_ = false;         // share_prompt(): not counted in the HTTP prompt tokens
  bool prompt_only_ = false;           // GenSpec::prompt_only: generated tokens are dropped
  bool keep_matched_token_text_ = false;  // GenSpec::no_stop_trim
  bool deferred_ = false;  // a later copy of an n > 1 choice, sent once copy 0 made its first token
  std::vector<TokenOut> prompt_lps_;   // prompt logprobs received, not yet handed out
  bool has_images_ = false;
  std::optional<double> ttft_s_, encoder_s_;
};

// The request log's time-to-first-token split for a request with images (empty without):
// " images=N image_decode_ms=… image_preprocess_ms=… image_encoder_ms=… prefill_ms=…" of its first
// choice. Decode and preprocess ran in the handler before queueing; prefill_ms is enqueue to first
// token less the encoder (so queue waits count in it); the encoder is "n/a" when another DP group ran
// it (prefill_ms then includes it).
class Generation;
std::string image_timing_log(size_t images, const MaterializeTimes& times, Generation& gen);

class Generation {
 public:
  // Enqueues every choice: choice i is prompt i / n, copy i % n (seeded copies get seed + copy),
  // registered as rid_of(i) for `owner`. With n > 1 and token prompts, copy 0 of each prompt goes
  // first and copies 1.. are enqueued once it has its first token (or ended): its prompt is then in
  // the prefix cache (the scheduler inserts a prompt's pages when its prefill completes) and in its
  // DP group, where they are sent, so the prompt is computed once, not n times. With echo + logprobs
  // only copy 0 computes the prompt's logprobs; the other copies are given the same entries.
  Generation(Engine& engine, const Tokenizer& tok, const GenSpec& spec, Metrics* metrics, RequestRegistry* registry,
             const std::function<std::string(size_t)>& rid_of, const std::string& owner);

  size_t size() const { return runs_.size(); }
  ChoiceRun& choice(size_t i) { return *runs_[i]; }

  // Feeds deliveries to `on_delta` until every choice has finished. Stops early, cancelling what is
  // left, when `on_delta` returns false or `client_gone()` turns true (then returns false).
  bool drive(const std::function<bool(size_t, const ChoiceDelta&)>& on_delta,
             const std::function<bool()>& client_gone);

 private:
  // Before handing out choice i's delta: starts the copies of a prompt whose copy 0 just delivered
  // its first token or ended, and gives a later copy its prompt's logprobs with its first delivery.
  void on_delivery(size_t i, ChoiceDelta& d);
  bool tell_ended_copies(const std::function<bool(size_t, const ChoiceDelta&)>& on_delta);

  Engine& engine_;
  std::vector<std::unique_ptr<ChoiceRun>> runs_;
  int32_t n_ = 1;                   // copies per prompt
  std::vector<bool> owes_prompt_;   // per choice: copy 0's prompt logprobs still to be attached
  std::vector<bool> copies_started_;  // per prompt: copies 1.. enqueued (from the start when not deferred)
  std::vector<std::vector<TokenOut>> prompt_lps_;  // per prompt: copy 0's prompt logprobs
  // Copies ended by on_delivery (their copy 0 was cancelled before they were sent): told after it.
  std::vector<std::pair<size_t, ChoiceDelta>> ended_copies_;
};

}  // namespace dpserve
