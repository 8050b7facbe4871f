// The vision tower's time per request, as rank 0's worker reports it (RuntimeOptions::image_tap),
// for /metrics and the request log's time-to-first-token split. Rank 0 runs the tower for the
// requests of its own DP group only, so those are the requests it knows (all of them at --dp-size 1).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace dpserve {

class EncoderTimes {
 public:
  // From the worker's thread: `images` of request `id` ran through the tower in `seconds`.
  void record(uint64_t id, int64_t images, double seconds);
  // The request's tower seconds so far, forgotten once taken (nullopt: not run on rank 0).
  std::optional<double> take(uint64_t id);

  int64_t images() const { return images_.load(); }
  double seconds() const { return seconds_.load(); }

 private:
  std::atomic<int64_t> images_{0};
  std::atomic<double> seconds_{0};
  std::mutex mu_;
  std::unordered_map<uint64_t, double> by_request_;
};

}  // namespace dpserve
