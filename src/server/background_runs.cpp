#include "server/background_runs.h"

#include <system_error>

namespace dpserve {

BackgroundRuns::~BackgroundRuns() {
  std::vector<std::thread> threads;
  {
    std::unique_lock<std::mutex> lk(mu_);
    stopping_ = true;
    for (auto& [id, run] : runs_) run.cancel->store(true);
    // A run's thread erases its entry when its work is done; then only the join is left.
    ended_.wait(lk, [&] { return runs_.empty(); });
    threads.swap(finished_);
  }
  for (auto& t : threads) t.join();
}

void BackgroundRuns::reap_locked() {
  // Joining a thread whose work ended only waits for it to return from its last unlock.
  for (auto& t : finished_) t.join();
  finished_.clear();
}

bool BackgroundRuns::start(const std::string& id, std::function<void(const std::function<bool()>&)> work) {
  std::lock_guard<std::mutex> lk(mu_);
  reap_locked();
  if (stopping_ || runs_.size() >= max_running_ || runs_.count(id)) return false;
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  Run& run = runs_[id];
  run.cancel = cancel;
  try {
    run.thread = std::thread([this, id, cancel, work = std::move(work)]() mutable {
      {
        // The work and everything it holds are gone before the entry is, so the destructor's wait
        // covers them.
        auto w = std::move(work);
        w([cancel] { return cancel->load(); });
      }
      std::lock_guard<std::mutex> lk2(mu_);
      auto it = runs_.find(id);
      finished_.push_back(std::move(it->second.thread));
      runs_.erase(it);
      ended_.notify_all();
    });
  } catch (const std::system_error&) {  // no thread to be had: the caller answers as for a full table
    runs_.erase(id);
    return false;
  }
  return true;
}

bool BackgroundRuns::cancel(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end()) return false;
  it->second.cancel->store(true);
  return true;
}

bool BackgroundRuns::wait(const std::string& id, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  return ended_.wait_for(lk, timeout, [&] { return runs_.count(id) == 0; });
}

bool BackgroundRuns::running(const std::string& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  return runs_.count(id) > 0;
}

size_t BackgroundRuns::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return runs_.size();
}

}  // namespace dpserve
