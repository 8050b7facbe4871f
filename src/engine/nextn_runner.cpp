#include "engine/nextn_runner.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/check.h"

namespace dpserve {

namespace {

// Rows of one MTP pass (a long prompt chunk's pairs are cut into passes of this many): bounds the
// layer's activations like the target's chunked prefill bounds its own.
constexpr int64_t kPassRows = 1024;
// Pairs a request keeps waiting before they run without a draft (kept as hidden states: 64 rows of
// hidden floats per request at most, past a prompt chunk).
constexpr int64_t kDeferPairs = 64;

// A request the MTP layer follows: one that can draft (as DraftRunner's: token ids only, no output
// constraint, at least two tokens to make).
bool follows(const RequestState& st) {
  return !st.matcher && !st.has_embeds() && !st.has_images() && st.max_new >= 2 &&
         st.req.pooling == Pooling::kNone;
}

}  // namespace

NextnRunner::NextnRunner(Model& mtp, int64_t kv_pages, int64_t page_size, int64_t token_limit)
    : model_(mtp),
      kv_(std::make_unique<KVPool>(mtp.kv_config(kv_pages, page_size))),
      limit_(std::min<int64_t>(token_limit, mtp.config().vocab)) {
  DP_CHECK(limit_ > 0);
}

int32_t NextnRunner::pick(const float* logits) const {
  return int32_t(std::max_element(logits, logits + limit_) - logits);
}

void NextnRunner::want_rows(const ScheduledBatch& b, ForwardBatch& fb) {
  rows_.clear();
  DP_CHECK(fb.seqs.size() == b.seqs.size());
  int64_t total = 0;
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    if (!follows(*b.seqs[i].state)) continue;
    const int64_t n = int64_t(b.seqs[i].tokens.size());
    rows_.push_back(Rows{i, total, n});
    for (int64_t k = 0; k < n; ++k) fb.last_hidden_rows.push_back(fb.seqs[i].q_row + k);
    total += n;
  }
  target_hidden_.resize(size_t(total * model_.config().hidden));
  fb.last_hidden = target_hidden_.data();
}

void NextnRunner::absorb(const ScheduledBatch& b, const std::vector<StepResult>& taken) {
  const int64_t H = model_.config().hidden;
  std::vector<Job> flush;
  for (const Rows& r : rows_) {
    const ScheduledSeq& s = b.seqs[r.seq];
    const RequestState& st = *s.state;
    std::vector<int32_t> made;
    for (const StepResult& t : taken)
      if (t.id == s.id) made.push_back(t.token);
    if (s.sample && made.empty()) continue;  // failed this step: it ends
    Seq& q = seqs_[s.id];
    int64_t next_pos = q.valid + int64_t(q.tok.size());
    if (next_pos < s.pos0) {
      // Positions before this step's first row that the MTP cache lacks have no target hidden state
      // here (a prefix-cache hit): skipped, their slots keep what they hold.
      q.tok.clear();
      q.h.clear();
      q.valid = next_pos = s.pos0;
    }
    const int64_t m = int64_t(st.tokens.size()), known = m + int64_t(made.size());
    const int64_t end = std::min(s.pos0 + r.n, known - 1);
    for (int64_t p = next_pos; p < end; ++p) {
      q.tok.push_back(p + 1 < m ? st.tokens[size_t(p + 1)] : made[size_t(p + 1 - m)]);
      const float* h = &target_hidden_[size_t((r.row + p - s.pos0) * H)];
      q.h.insert(q.h.end(), h, h + H);
    }
    if (int64_t(q.tok.size()) > kDeferPairs) flush.push_back(Job{&q, s.pages, int64_t(q.tok.size()) - 1, false});
  }
  rows_.clear();
  run(flush);
}

void NextnRunner::run(std::vector<Job>& jobs) {
  const int64_t H = model_.config().hidden, V = model_.config().vocab;
  std::vector<int64_t> done(jobs.size(), 0);
  for (bool more = !jobs.empty(); more;) {
    more = false;
    ForwardBatch fb;
    std::vector<size_t> owners;  // of the logit rows, in order
    prev_.clear();
    int64_t rows = 0;
    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& w = jobs[j];
      if (done[j] >= w.count) continue;
      if (rows >= kPassRows) {
        more = true;
        continue;
      }
      const int64_t take = std::min(w.count - done[j], kPassRows - rows);
      fb.add(w.q->tok.data() + done[j], take, w.q->valid + done[j], w.pages, false);
      prev_.insert(prev_.end(), w.q->h.begin() + ptrdiff_t(done[j] * H), w.q->h.begin() + ptrdiff_t((done[j] + take) * H));
      done[j] += take;
      rows += take;
      if (done[j] < w.count) more = true;
      if (done[j] < w.count || !w.draft) {
        fb.logit_rows.pop_back();
      } else {
        owners.push_back(j);
        fb.last_hidden_rows.push_back(fb.logit_rows.back());
      }
    }
    if (rows == 0) break;
    fb.prev_hidden = prev_.data();
    logits_.resize(owners.size() * size_t(V));
    out_.resize(owners.size() * size_t(H));
    fb.last_hidden = out_.data();
    model_.forward(fb, *kv_, logits_.data());
    for (size_t i = 0; i < owners.size(); ++i) {
      Job& w = jobs[owners[i]];
      w.first = pick(&logits_[i * size_t(V)]);
      w.q->out.assign(out_.begin() + ptrdiff_t(i * size_t(H)), out_.begin() + ptrdiff_t((i + 1) * size_t(H)));
    }
  }
  for (Job& w : jobs) {
    Seq& q = *w.q;
    q.tok.erase(q.tok.begin(), q.tok.begin() + ptrdiff_t(w.count));
    q.h.erase(q.h.begin(), q.h.begin() + ptrdiff_t(w.count * H));
    q.valid += w.count;
  }
}

void NextnRunner::fill(ScheduledBatch& b) {
  const int64_t H = model_.config().hidden, V = model_.config().vocab;
  struct Work {
    ScheduledSeq* s;
    Seq* q;
    std::vector<int32_t> drafts;
  };
  std::vector<Work> work;
  std::vector<Job> jobs;
  for (ScheduledSeq& s : b.seqs) {
    // Drafts given (a predicted output's) stay; absorb() keeps the pairs of their rows all the same.
    if (!s.decode || s.n_draft <= 0 || s.drafts_given) continue;
    const int64_t n = int64_t(s.state->tokens.size());
    DP_CHECK(s.pos0 + 1 == n, "request {}: a decode at position {} with {} tokens", s.id, s.pos0, n);
    auto it = seqs_.find(s.id);
    if (it == seqs_.end() || it->second.tok.empty() || it->second.valid + int64_t(it->second.tok.size()) != n - 1) {
      // Not followed up to its last token (cannot happen for a request that drafts; kept total):
      // the rows verify a repeat of the last token, which changes no output.
      std::fill(s.tokens.begin() + 1, s.tokens.end(), s.tokens[0]);
      continue;
    }
    jobs.push_back(Job{&it->second, s.pages, int64_t(it->second.tok.size()), true});
    work.push_back(Work{&s, &it->second, {}});
  }
  // The pending pairs: the last one's argmax is the first draft.
  run(jobs);
  for (size_t i = 0; i < work.size(); ++i) work[i].drafts.push_back(jobs[i].first);
  // The chain: draft j + 1 from the pair (the MTP layer's own last output, draft j) at position
  // n - 2 + j, every request that still drafts in the same pass.
  for (int64_t j = 1;; ++j) {
    ForwardBatch fb;
    std::vector<Work*> owners;
    prev_.clear();
    for (Work& w : work) {
      if (w.s->n_draft <= j) continue;
      fb.add(&w.drafts[size_t(j - 1)], 1, w.s->pos0 - 1 + j, w.s->pages, false);
      fb.last_hidden_rows.push_back(int64_t(owners.size()));
      prev_.insert(prev_.end(), w.q->out.begin(), w.q->out.end());
      owners.push_back(&w);
    }
    if (owners.empty()) break;
    fb.prev_hidden = prev_.data();
    logits_.resize(owners.size() * size_t(V));
    out_.resize(owners.size() * size_t(H));
    fb.last_hidden = out_.data();
    model_.forward(fb, *kv_, logits_.data());
    for (size_t i = 0; i < owners.size(); ++i) {
      owners[i]->drafts.push_back(pick(&logits_[i * size_t(V)]));
      std::copy(out_.begin() + ptrdiff_t(i * size_t(H)), out_.begin() + ptrdiff_t((i + 1) * size_t(H)),
                owners[i]->q->out.begin());
    }
  }
  // DPSERVE_NEXTN_DRAFT_LOG: a line per chain ("request-id tokens-so-far d1,d2,..."), so tests can
  // check the drafts against the NumPy reference's (one append per line: ranks may share the file).
  static const char* log_path = std::getenv("DPSERVE_NEXTN_DRAFT_LOG");
  for (Work& w : work) {
    ScheduledSeq& s = *w.s;
    DP_CHECK(int64_t(w.drafts.size()) == s.n_draft && int64_t(s.tokens.size()) == 1 + s.n_draft);
    if (log_path && *log_path) {
      std::string line = std::to_string(s.id) + " " + std::to_string(s.pos0 + 1) + " ";
      for (size_t i = 0; i < w.drafts.size(); ++i) {
        if (i) line += ',';
        line += std::to_string(w.drafts[i]);
      }
      line += "\n";
      if (const int fd = ::open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644); fd >= 0) {
        [[maybe_unused]] const ssize_t n = ::write(fd, line.data(), line.size());
        ::close(fd);
      }
    }
    std::copy(w.drafts.begin(), w.drafts.end(), s.tokens.begin() + 1);
  }
}

}  // namespace dpserve
