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
  // Bytes of entries kept before the cache starts over: a schema of many properties reaches a
  // few thousand (rule, state) pairs, and on a 152k-token vocabulary each entry is 19 KB, so an
  // entry count alone let one schema hold ~80 MB and 64 of them 5 GB.
  static constexpr size_t kDefaultMaxBytes = size_t(32) << 20;

  TokenMaskCache(std::shared_ptr<const Automaton> a, std::shared_ptr<const VocabIndex> v,
                 size_t max_bytes = kDefaultMaxBytes);

  // Thread-safe; computes the entry on a miss (the same result on every rank: a pure function).
  std::shared_ptr<const Entry> get(uint32_t rule, int32_t state);

  const Automaton& automaton() const { return *a_; }
  const VocabIndex& vocab() const { return *v_; }
  const std::shared_ptr<const Automaton>& automaton_ptr() const { return a_; }
  size_t entries() const;
  size_t bytes() const;  // held by the entries now (at most max_bytes, plus one entry)
  // What one entry costs, as bytes() counts it.
  static size_t entry_bytes(const Entry& e);
  uint64_t misses() const { return misses_; }
  double compute_seconds() const { return compute_seconds_; }  // spent computing entries

 private:
  Entry compute(uint32_t rule, int32_t state) const;
  std::shared_ptr<const Automaton> a_;
  std::shared_ptr<const VocabIndex> v_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<const Entry>> map_;
  size_t max_bytes_, bytes_ = 0;
  uint64_t misses_ = 0;
  double compute_seconds_ = 0;
};

}  // namespace dpserve::constrain
