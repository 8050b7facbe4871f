// cpp-httplib task queue that starts a thread per connection when none is idle, up to a cap: idle
// or slow clients hold a thread each, so a fixed pool would let them queue everyone else behind.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace dpserve {

class ElasticThreadPool : public httplib::TaskQueue {
 public:
  // `initial` threads start at once; more start on demand up to `max_threads` and then stay
  // (so the count is bounded and a soak reaches a steady state).
  ElasticThreadPool(size_t initial, size_t max_threads);
  ~ElasticThreadPool() override;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins every thread.
  void shutdown() override;

  size_t threads() const;

 private:
  void spawn_locked();
  void work();

  const size_t max_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool shutdown_ = false;
};

}  // namespace dpserve
