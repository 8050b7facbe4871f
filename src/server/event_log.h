// The server-sent events of a streamed background response, kept so that any number of readers
// (the create call's stream, GET /v1/responses/{id}?stream=true&starting_after=N after a dropped
// connection) can follow them from any point while the run appends; and the logs of the most
// recent runs by response id, the finished ones bounded in count.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace dpserve {

class EventLog {
 public:
  void append(std::string event);
  void finish();
  // The events from index `from` on (waiting up to `timeout` when there are none yet); `done` is
  // true once the log is finished and nothing after the returned events remains.
  std::vector<std::string> read(size_t from, std::chrono::milliseconds timeout, bool& done) const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> events_;
  bool finished_ = false;
};

class EventLogs {
 public:
  // Keeps the logs of running responses and of the `keep_finished` that finished last.
  explicit EventLogs(size_t keep_finished) : keep_finished_(keep_finished) {}
  std::shared_ptr<EventLog> open(const std::string& id);
  // The log's run ended: it stays readable until `keep_finished` later ones have ended.
  void finished(const std::string& id);
  std::shared_ptr<EventLog> find(const std::string& id) const;
  void erase(const std::string& id);

 private:
  const size_t keep_finished_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<EventLog>> logs_;
  std::deque<std::string> finished_;  // oldest first
};

}  // namespace dpserve
