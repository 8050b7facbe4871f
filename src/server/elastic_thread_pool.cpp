#include "server/elastic_thread_pool.h"

#include <algorithm>

namespace dpserve {

ElasticThreadPool::ElasticThreadPool(size_t initial, size_t max_threads) : max_(std::max<size_t>(1, max_threads)) {
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < std::min(initial, max_); ++i) spawn_locked();
}

ElasticThreadPool::~ElasticThreadPool() { shutdown(); }

void ElasticThreadPool::spawn_locked() {
  threads_.emplace_back([this] { work(); });
}

void ElasticThreadPool::enqueue(std::function<void()> fn) {
  {
    std::lock_guard lk(mu_);
    jobs_.push_back(std::move(fn));
    // Jobs already queued count against the idle threads that will pick them up.
    if (idle_ < jobs_.size() && threads_.size() < max_) spawn_locked();
  }
  cv_.notify_one();
}

void ElasticThreadPool::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lk(mu_);
      ++idle_;
      cv_.wait(lk, [this] { return shutdown_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // shutting down and nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void ElasticThreadPool::shutdown() {
  std::vector<std::thread> ts;
  {
    std::lock_guard lk(mu_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
    ts.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : ts) t.join();
}

size_t ElasticThreadPool::threads() const {
  std::lock_guard lk(mu_);
  return threads_.size();
}

}  // namespace dpserve
