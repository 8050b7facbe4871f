// One rank's constrained-decoding context: the vocabulary index of the served tokenizer (built
// once at start) and the token-mask caches of the automata its requests use, shared by requests
// with the same automaton (by fingerprint) and dropped least recently used first. Caches are pure
// functions of (automaton, vocabulary), so keeping or dropping one never changes a mask.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "constrain/matcher.h"

namespace dpserve::constrain {

class MatcherRegistry {
 public:
  explicit MatcherRegistry(std::shared_ptr<const VocabIndex> vocab, size_t capacity = 64);

  // A matcher at the start of `a`'s grammar.
  std::unique_ptr<Matcher> make(const std::shared_ptr<const Automaton>& a);
  const VocabIndex& vocab() const { return *vocab_; }
  size_t size() const;

 private:
  std::shared_ptr<const VocabIndex> vocab_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::pair<std::shared_ptr<TokenMaskCache>, std::list<uint64_t>::iterator>> map_;
  std::list<uint64_t> lru_;  // most recent first
};

}  // namespace dpserve::constrain
