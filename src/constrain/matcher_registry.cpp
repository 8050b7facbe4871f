#include "constrain/matcher_registry.h"

namespace dpserve::constrain {

MatcherRegistry::MatcherRegistry(std::shared_ptr<const VocabIndex> vocab, size_t capacity)
    : vocab_(std::move(vocab)), capacity_(capacity) {}

size_t MatcherRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

std::unique_ptr<Matcher> MatcherRegistry::make(const std::shared_ptr<const Automaton>& a) {
  std::shared_ptr<TokenMaskCache> cache;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t fp = a->fingerprint();
    auto it = map_.find(fp);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.second);
      cache = it->second.first;
    } else {
      cache = std::make_shared<TokenMaskCache>(a, vocab_);
      lru_.push_front(fp);
      map_.emplace(fp, std::make_pair(cache, lru_.begin()));
      while (map_.size() > capacity_) {
        map_.erase(lru_.back());
        lru_.pop_back();
      }
    }
  }
  return std::make_unique<Matcher>(std::move(cache));
}

}  // namespace dpserve::constrain
