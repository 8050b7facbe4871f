#include "constrain/matcher_registry.h"

namespace dpserve::constrain {

MatcherRegistry::MatcherRegistry(std::shared_ptr<const VocabIndex> vocab, size_t capacity, size_t max_bytes,
                                 size_t cache_max_bytes)
    : vocab_(std::move(vocab)), capacity_(capacity), max_bytes_(max_bytes), cache_max_bytes_(cache_max_bytes) {}

size_t MatcherRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

size_t MatcherRegistry::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (const auto& [fp, slot] : map_) total += slot.first->bytes();
  return total;
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
      cache = std::make_shared<TokenMaskCache>(a, vocab_, cache_max_bytes_);
      lru_.push_front(fp);
      map_.emplace(fp, std::make_pair(cache, lru_.begin()));
      while (map_.size() > capacity_) {
        map_.erase(lru_.back());
        lru_.pop_back();
      }
    }
    // The byte budget, over what the caches hold now (they grew since the last call); the cache
    // just asked for stays.
    size_t total = 0;
    for (const auto& [k, slot] : map_) total += slot.first->bytes();
    while (total > max_bytes_ && map_.size() > 1) {
      auto victim = map_.find(lru_.back());
      total -= victim->second.first->bytes();
      map_.erase(victim);
      lru_.pop_back();
    }
  }
  return std::make_unique<Matcher>(std::move(cache));
}

}  // namespace dpserve::constrain
