// STANDALONE speculative decoding: a smaller model with the target's vocabulary drafts each
// request's next tokens greedily. It is loaded whole on every rank (no collectives: every rank of a
// DP group runs it on the same tokens and, its kernels being deterministic, drafts the same), and its
// KV cache is a second pool with the target pool's page geometry, addressed through each request's
// own page table: preemption, eviction and the prefix cache treat both caches alike
// (docs/speculative.md, "STANDALONE").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "kv/kv_pool.h"
#include "model/model.h"

namespace dpserve {

class DraftRunner {
 public:
  // `kv_pages` and `page_size` as the target's pool (the page tables are shared); drafts are drawn
  // from ids below `token_limit` (the target's vocabulary and tokenizer, whichever is smaller).
  DraftRunner(Model& draft, int64_t kv_pages, int64_t page_size, int64_t token_limit);

  // Fills the drafted rows (tokens[1..n_draft]) of every decode in `b` that reserved some: the
  // draft model runs first over the tokens its cache lacks for each request (the tokens accepted
  // since its last draft; a prompt is read as its chunks are prefilled), then one row per further
  // drafted token.
  void fill(ScheduledBatch& b);
  // Forgets what the draft cache holds for requests that are no longer running with the pages it
  // was written to (preempted in `b`, or ended: not `alive`).
  template <class Alive>
  void sweep(const ScheduledBatch& b, Alive&& alive) {
    for (uint64_t id : b.preempted) seqs_.erase(id);
    for (auto it = seqs_.begin(); it != seqs_.end();) it = alive(it->first) ? std::next(it) : seqs_.erase(it);
  }

 private:
  // What the draft cache holds for a request: KV of its tokens [0, valid), and after them KV of the
  // tokens drafted last, from position `valid` on (whichever of them the target accepted extends
  // `valid` at the next fill).
  struct Seq {
    int64_t valid = 0;
    std::vector<int32_t> tail;
  };
  int32_t pick(const float* logits) const;  // greedy: the highest logit, ties to the lower id

  Model& model_;
  std::unique_ptr<KVPool> kv_;
  int64_t limit_;
  std::map<uint64_t, Seq> seqs_;
  std::vector<float> logits_;
};

}  // namespace dpserve
