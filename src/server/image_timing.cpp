#include "server/image_timing.h"

namespace dpserve {

namespace {

// Requests whose entry is never taken (their handler gave up before the first token) must not grow
// the table without bound; past this many the table starts over (only a log line loses its figure).
constexpr size_t kMaxPending = 4096;

}  // namespace

void EncoderTimes::record(uint64_t id, int64_t images, double seconds) {
  images_ += images;
  seconds_.fetch_add(seconds);
  std::lock_guard<std::mutex> lk(mu_);
  if (by_request_.size() >= kMaxPending) by_request_.clear();
  by_request_[id] += seconds;
}

std::optional<double> EncoderTimes::take(uint64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = by_request_.find(id);
  if (it == by_request_.end()) return std::nullopt;
  const double s = it->second;
  by_request_.erase(it);
  return s;
}

}  // namespace dpserve
