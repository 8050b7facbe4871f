// A server-wide budget of bytes that work may hold at once (image decoding, --image-decode-memory):
// a request takes its share before it starts, waits a bounded time when the budget is in use, and
// gives it back when done. Shares are taken one at a time per request (it decodes its images one
// after another), so no request waits while holding one: no deadlock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace dpserve {

class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t capacity) : capacity_(capacity) {}

  int64_t capacity() const { return capacity_; }
  int64_t in_use() const;

  // A share of `bytes` (<= capacity), waiting up to `wait` for it; null when it did not free up in
  // time. The share is returned when the handle goes.
  std::shared_ptr<void> acquire(int64_t bytes, std::chrono::milliseconds wait);

 private:
  const int64_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t used_ = 0;
};

}  // namespace dpserve
