// Runs that outlive the HTTP request that started them (/v1/responses with background: true): a
// thread each, up to a bound, each findable by id to be cancelled and waited for; the destructor
// cancels what still runs and joins every thread before the state they use goes away.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace dpserve {

class BackgroundRuns {
 public:
  explicit BackgroundRuns(size_t max_running) : max_running_(max_running) {}
  ~BackgroundRuns();
  BackgroundRuns(const BackgroundRuns&) = delete;
  BackgroundRuns& operator=(const BackgroundRuns&) = delete;

  // Starts `work(cancelled)` on its own thread under `id`; `cancelled()` turns true once cancel(id)
  // was called or the runs are shutting down. False (nothing started) when `max_running` already run.
  bool start(const std::string& id, std::function<void(const std::function<bool()>& cancelled)> work);
  // Asks the run of `id` to stop; false when no run of that id is going.
  bool cancel(const std::string& id);
  // Waits up to `timeout` for the run of `id` to end; true when it is not running (any more).
  bool wait(const std::string& id, std::chrono::milliseconds timeout);
  bool running(const std::string& id) const;
  size_t size() const;
  size_t max_running() const { return max_running_; }

 private:
  struct Run {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> cancel;
  };
  void reap_locked();  // joins the threads of runs that ended

  const size_t max_running_;
  mutable std::mutex mu_;
  std::condition_variable ended_;
  std::unordered_map<std::string, Run> runs_;
  std::vector<std::thread> finished_;  // ended runs' threads, joined at the next start or at the end
  bool stopping_ = false;
};

}  // namespace dpserve
