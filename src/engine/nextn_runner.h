// NEXTN speculative decoding: a DeepSeek-V3, GLM-4.5 or GLM-4.7-Flash checkpoint's own
// multi-token-prediction (MTP) layer drafts each request's next tokens greedily from the target's
// (normed) hidden states. The layer is loaded
// whole on every rank (Model with LoadOptions::nextn; no collectives: every rank of a DP group runs it
// on the same pairs and drafts the same tokens), and its KV cache is a second pool with the target
// pool's page geometry, addressed through each request's own page table, like DraftRunner's
// (docs/speculative.md, "NEXTN").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "kv/kv_pool.h"
#include "model/model.h"

namespace dpserve {

class NextnRunner {
 public:
  // `kv_pages` and `page_size` as the target's pool (the page tables are shared); drafts are drawn
  // from ids below `token_limit`.
  NextnRunner(Model& mtp, int64_t kv_pages, int64_t page_size, int64_t token_limit);

  // Before the target's forward pass over `b` (fb built from it, seq by seq): asks for the hidden
  // states after the final norm of every row of the requests that can draft.
  void want_rows(const ScheduledBatch& b, ForwardBatch& fb);
  // After the step's tokens are drawn (`taken`: every token produced this step, by request, in
  // order), before they are committed: each pair (h_p, t_{p+1}) of this step's rows whose next
  // token is now known joins the request's pending pairs. Pairs wait until the request drafts (or
  // until more than kDeferPairs wait: all but the last then run), so a request whose drafting is
  // paused costs the MTP layer one batched pass per kDeferPairs tokens instead of one per token.
  void absorb(const ScheduledBatch& b, const std::vector<StepResult>& taken);
  // Fills the drafted rows (tokens[1..n_draft]) of every decode in `b` that reserved some: the MTP
  // layer reads each request's pending pairs at their KV positions (the last one's argmax is the
  // first draft), then one row per further draft (its own last hidden state with the token it
  // drafted), every drafting request of the step in the same passes.
  void fill(ScheduledBatch& b);
  // Forgets requests that are no longer running with the pages their MTP cache was written to.
  template <class Alive>
  void sweep(const ScheduledBatch& b, Alive&& alive) {
    for (uint64_t id : b.preempted) seqs_.erase(id);
    for (auto it = seqs_.begin(); it != seqs_.end();) it = alive(it->first) ? std::next(it) : seqs_.erase(it);
  }

 private:
  // What the MTP cache holds for a request: the pairs of positions [0, valid) (positions the target
  // never ran for it, such as a prefix-cache hit, are skipped: their slots keep what they hold,
  // the same on every rank); then the pairs of positions [valid, valid + tok.size()) wait, with
  // their tokens t_{p+1} and the target's hidden states h_p.
  struct Seq {
    int64_t valid = 0;
    std::vector<int32_t> tok;
    std::vector<float> h;
    std::vector<float> out;  // after a draft pass: its last row's output hidden state
  };
  // The target rows asked for this step: seq b.seqs[seq], hidden rows [row, row + n).
  struct Rows {
    size_t seq;
    int64_t row, n;
  };
  // One request's pending pairs to run: the first `count`, the last of them giving a draft (logits
  // and output hidden state) when `draft`.
  struct Job {
    Seq* q;
    const int32_t* pages;
    int64_t count;
    bool draft;
    int32_t first = 0;
  };
  // Runs the jobs' pairs in passes of at most kPassRows rows, drops them from the pending lists and
  // advances `valid`.
  void run(std::vector<Job>& jobs);
  int32_t pick(const float* logits) const;  // greedy: the highest logit, ties to the lower id

  Model& model_;
  std::unique_ptr<KVPool> kv_;
  int64_t limit_;
  std::map<uint64_t, Seq> seqs_;
  std::vector<Rows> rows_;
  std::vector<float> target_hidden_, prev_, logits_, out_;
};

}  // namespace dpserve
