#include "server/event_log.h"

#include <algorithm>

namespace dpserve {

void EventLog::append(std::string event) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

void EventLog::finish() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    finished_ = true;
  }
  cv_.notify_all();
}

std::vector<std::string> EventLog::read(size_t from, std::chrono::milliseconds timeout, bool& done) const {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return finished_ || events_.size() > from; });
  std::vector<std::string> out;
  if (from < events_.size()) out.assign(events_.begin() + std::ptrdiff_t(from), events_.end());
  done = finished_;
  return out;
}

size_t EventLog::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return events_.size();
}

std::shared_ptr<EventLog> EventLogs::open(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto log = std::make_shared<EventLog>();
  logs_[id] = log;
  return log;
}

void EventLogs::finished(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!logs_.count(id)) return;  // erased (the response was deleted)
  finished_.push_back(id);
  while (finished_.size() > keep_finished_) {
    logs_.erase(finished_.front());
    finished_.pop_front();
  }
}

std::shared_ptr<EventLog> EventLogs::find(const std::string& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = logs_.find(id);
  return it == logs_.end() ? nullptr : it->second;
}

void EventLogs::erase(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  logs_.erase(id);
  finished_.erase(std::remove(finished_.begin(), finished_.end(), id), finished_.end());
}

}  // namespace dpserve
