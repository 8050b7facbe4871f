#include "engine/draft_runner.h"

#include <algorithm>

#include "core/check.h"

namespace dpserve {

namespace {

// Rows of one catch-up forward pass (a long prompt's first draft is cut into passes of this many):
// bounds the draft model's activations like the target's chunked prefill bounds its own.
constexpr int64_t kCatchUpRows = 1024;

}  // namespace

DraftRunner::DraftRunner(Model& draft, int64_t kv_pages, int64_t page_size, int64_t token_limit)
    : model_(draft),
      kv_(std::make_unique<KVPool>(draft.kv_config(kv_pages, page_size))),
      limit_(std::min<int64_t>(token_limit, draft.config().vocab)) {
  DP_CHECK(limit_ > 0);
}

int32_t DraftRunner::pick(const float* logits) const {
  return int32_t(std::max_element(logits, logits + limit_) - logits);
}

void DraftRunner::fill(ScheduledBatch& b) {
  struct Work {
    ScheduledSeq* s;
    Seq* seq;
    int64_t cursor;  // next position the catch-up feeds
    int64_t end;     // positions to have in the draft cache: before drafting, the request's tokens
    bool draft;      // a decode that drafts (else a prompt chunk the draft cache follows)
    std::vector<int32_t> drafts;
  };
  std::vector<Work> work;
  for (ScheduledSeq& s : b.seqs) {
    const RequestState& st = *s.state;
    if (!s.decode) {
      // The draft cache follows the prompt as it is prefilled, so a request's first draft does not
      // wait for the draft model to read its whole prompt (and that cost shows in time to first
      // token, as the target's prefill does). Only for requests that can draft at all.
      if (st.matcher || st.has_embeds() || st.has_images() || st.max_new < 2) continue;
      Seq& q = seqs_[s.id];
      const int64_t end = s.pos0 + int64_t(s.tokens.size());
      if (q.valid < end) work.push_back(Work{&s, &q, q.valid, end, false, {}});
      continue;
    }
    // Drafts given (a predicted output's) stay; the draft cache catches up at the next drafting step.
    if (s.n_draft <= 0 || s.drafts_given) continue;
    const std::vector<int32_t>& toks = st.tokens;
    const int64_t n = int64_t(toks.size());
    DP_CHECK(s.pos0 + 1 == n, "request {}: a decode at position {} with {} tokens", s.id, s.pos0, n);
    Seq& q = seqs_[s.id];
    // The drafted tokens the target accepted since are in the cache already.
    for (size_t i = 0; i < q.tail.size() && q.valid < n && toks[size_t(q.valid)] == q.tail[i]; ++i) ++q.valid;
    q.tail.clear();
    q.valid = std::min(q.valid, n - 1);  // the last token is fed below: its logits draft the first
    work.push_back(Work{&s, &q, q.valid, n, true, {}});
  }
  if (work.empty()) return;
  const int64_t V = model_.config().vocab;

  // Catch-up: every request's missing tokens, the last one's logits giving its first draft.
  for (bool more = true; more;) {
    more = false;
    ForwardBatch fb;
    std::vector<Work*> owners;  // of the logit rows, in order
    int64_t rows = 0;
    for (Work& w : work) {
      if (w.cursor >= w.end) continue;
      if (rows >= kCatchUpRows) {
        more = true;
        continue;
      }
      const int64_t take = std::min(w.end - w.cursor, kCatchUpRows - rows);
      fb.add(w.s->state->tokens.data() + w.cursor, take, w.cursor, w.s->pages, false);
      w.cursor += take;
      rows += take;
      if (w.cursor < w.end) more = true;
      if (w.cursor < w.end || !w.draft) {
        fb.logit_rows.pop_back();
      } else {
        owners.push_back(&w);
      }
    }
    logits_.resize(owners.size() * size_t(V));
    model_.forward(fb, *kv_, logits_.data());
    for (size_t i = 0; i < owners.size(); ++i) owners[i]->drafts.push_back(pick(&logits_[i * size_t(V)]));
  }

  // Then one row per further draft, every request that still drafts in the same pass.
  for (int64_t j = 1;; ++j) {
    ForwardBatch fb;
    std::vector<Work*> owners;
    for (Work& w : work) {
      if (!w.draft || w.s->n_draft <= j) continue;
      fb.add(&w.drafts[size_t(j - 1)], 1, w.end - 1 + j, w.s->pages, false);
      owners.push_back(&w);
    }
    if (owners.empty()) break;
    logits_.resize(owners.size() * size_t(V));
    model_.forward(fb, *kv_, logits_.data());
    for (size_t i = 0; i < owners.size(); ++i) owners[i]->drafts.push_back(pick(&logits_[i * size_t(V)]));
  }

  for (Work& w : work) {
    ScheduledSeq& s = *w.s;
    w.seq->valid = w.end;
    w.seq->tail.clear();
    if (!w.draft) continue;
    DP_CHECK(int64_t(w.drafts.size()) == s.n_draft && int64_t(s.tokens.size()) == 1 + s.n_draft);
    std::copy(w.drafts.begin(), w.drafts.end(), s.tokens.begin() + 1);
    // Cached now: the request's tokens, then the drafts fed after the first (all but the last).
    w.seq->tail.assign(w.drafts.begin(), w.drafts.end() - 1);
  }
}

}  // namespace dpserve
