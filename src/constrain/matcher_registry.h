// One rank's constrained-decoding context: the vocabulary index of the served tokenizer (built
// once at start) and the token-mask caches of the automata its requests use, shared by requests
// with the same automaton (by fingerprint) and dropped least recently used first, by count and by
// bytes. Caches are pure functions of (automaton, vocabulary), so keeping or dropping one never
// changes a mask.
//
// Bytes: each cache holds at most its own cap (TokenMaskCache::kDefaultMaxBytes); at every make()
// the registry drops least recently used caches until the ones it keeps hold at most `max_bytes`
// together. Caches grow while their requests decode, so between two make() calls the total can
// pass the budget by the growth of the caches in use, each bounded by its cap. A dropped cache's
// memory returns once the last request using it ends.
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
  static constexpr size_t kDefaultMaxBytes = size_t(256) << 20;
  explicit MatcherRegistry(std::shared_ptr<const VocabIndex> vocab, size_t capacity = 64,
                           size_t max_bytes = kDefaultMaxBytes, size_t cache_max_bytes = TokenMaskCache::kDefaultMaxBytes);

  // A matcher at the start of `a`'s grammar.
  std::unique_ptr<Matcher> make(const std::shared_ptr<const Automaton>& a);
  const VocabIndex& vocab() const { return *vocab_; }
  size_t size() const;
  size_t bytes() const;  // held by the caches kept now

 private:
  std::shared_ptr<const VocabIndex> vocab_;
  size_t capacity_, max_bytes_, cache_max_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::pair<std::shared_ptr<TokenMaskCache>, std::list<uint64_t>::iterator>> map_;
  std::list<uint64_t> lru_;  // most recent first
};

}  // namespace dpserve::constrain
