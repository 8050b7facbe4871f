#include "constrain/compile_cache.h"

#include "core/check.h"

namespace dpserve::constrain {

std::shared_ptr<const Automaton> CompileCache::get(const ConstraintSpec& spec) {
  const std::string key = spec.key();
  auto cached = [&]() -> std::shared_ptr<const Automaton> {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    if (it->second.automaton) return it->second.automaton;
    throw Error(it->second.error);
  };
  if (auto a = cached()) return a;
  // Compiled outside the lock: a slow schema does not hold up requests with cached ones.
  Slot slot;
  {
    compiling_.acquire();
    struct Release {
      std::counting_semaphore<kMaxConcurrentCompiles>& s;
      ~Release() { s.release(); }
    } release{compiling_};
    // The same text may have compiled while this one waited its turn.
    if (auto a = cached()) return a;
    try {
      slot.automaton = compile_constraint(spec, json_);
    } catch (const Error& e) {
      slot.error = e.what();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++misses_;
  auto [it, fresh] = map_.try_emplace(key, std::move(slot));
  if (fresh) {
    lru_.push_front(key);
    it->second.lru = lru_.begin();
    it->second.bytes = 2 * key.size() + it->second.error.size() + 256 +
                       (it->second.automaton ? it->second.automaton->bytes() : 0);
    bytes_ += it->second.bytes;
    // The newest entry stays even when it alone is over the budget: its request uses it now.
    while (map_.size() > 1 && (map_.size() > capacity_ || bytes_ > max_bytes_)) {
      auto victim = map_.find(lru_.back());
      bytes_ -= victim->second.bytes;
      map_.erase(victim);
      lru_.pop_back();
    }
  }
  // A copy: the entry may be dropped by another thread once the lock is released.
  std::shared_ptr<const Automaton> a = it->second.automaton;
  if (a) return a;
  throw Error(it->second.error);
}

uint64_t CompileCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

size_t CompileCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

uint64_t CompileCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}

}  // namespace dpserve::constrain
