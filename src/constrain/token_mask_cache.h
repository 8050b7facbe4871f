// For one (rule, state) of an automaton, the split of the vocabulary that does not depend on the
// stack below it: the tokens accepted whatever the stack holds, and the few whose fate depends on
// it (they finish the rule and read on). One preorder walk of the vocabulary trie finds both; the
// result is computed on first use and shared by every request of the same automaton, so a mask is
// then a union of cached bitsets plus a short list of tokens to check (the idea of XGrammar's
// adaptive token mask cache, over our own automaton).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "constrain/automaton.h"
#include "constrain/vocab_index.h"

namespace dpserve::constrain {

class TokenMaskCache {
 public:
  struct Entry {
    std::vector<uint64_t> accepted;  // mask_words() bits
    std::vector<int32_t> uncertain;  // tokens that leave the rule: check against the real stack
  };
  // Entries kept before the cache starts over (each is one vocabulary-wide bitset).
  static constexpr size_t kMaxEntries = 4096;

  TokenMaskCache(std::shared_ptr<const Automaton> a, std::shared_ptr<const VocabIndex> v);

  // Thread-safe; computes the entry on a miss (the same result on every rank: a pure function).
  std::shared_ptr<const Entry> get(uint32_t rule, int32_t state);

  const Automaton& automaton() const { return *a_; }
  const VocabIndex& vocab() const { return *v_; }
  const std::shared_ptr<const Automaton>& automaton_ptr() const { return a_; }
  size_t entries() const;
  uint64_t misses() const { return misses_; }
  double compute_seconds() const { return compute_seconds_; }  // spent computing entries

 private:
  Entry compute(uint32_t rule, int32_t state) const;
  std::shared_ptr<const Automaton> a_;
  std::shared_ptr<const VocabIndex> v_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<const Entry>> map_;
  uint64_t misses_ = 0;
  double compute_seconds_ = 0;
};

}  // namespace dpserve::constrain
