// Prometheus text exposition for /metrics: request latencies as histograms, token counters, and the
// engine's per-DP-group queue, KV and prefix-cache gauges (label dp_rank).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "server/image_timing.h"
#include "vision/image_resize.h"

namespace dpserve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends the _bucket / _sum / _count lines (with HELP and TYPE).
  void render(std::string& out, const std::string& name, const std::string& help, const std::string& labels = "") const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  Histogram time_to_first_token;  // seconds
  Histogram inter_token_latency;  // seconds per token after the first
  Histogram e2e_latency;          // seconds from arrival to the last token

  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> completion_tokens{0};
  std::atomic<int64_t> http_inflight{0};
  std::atomic<int64_t> rejected_overload{0};     // 429s from --max-queued-requests / --max-queued-tokens
  std::atomic<int64_t> read_deadline_closed{0};  // connections closed for sending a request body too slowly
  std::atomic<int64_t> http_connections{0};      // connections accepted and not yet closed
  // Images materialized (decoded + resized) on rank 0, and the time that took.
  std::atomic<int64_t> images_materialized{0};
  std::atomic<double> image_decode_seconds{0};
  std::atomic<double> image_preprocess_seconds{0};
  // The vision tower's runs on rank 0 (set by `serve` for a model that takes images; null otherwise).
  std::shared_ptr<EncoderTimes> encoder;

  void count_images(int64_t n, const MaterializeTimes& t);

  void count_request(const std::string& route, int status);
  // Finish reasons of generation choices (stop, length, abort, error).
  void count_finish(const std::string& reason);

  // `sequences` / `tokens`: the generation work the HTTP frontend has admitted and not finished.
  std::string render(const EngineStats& engine, bool healthy, bool draining, int64_t sequences = 0,
                     int64_t tokens = 0) const;
  // The same numbers under SGLang's metric names (sglang:*, label model_name), for its dashboards.
  std::string render_sglang(const EngineStats& engine, const std::string& model_name, int64_t page_size) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, int64_t> finishes_;
};

// KV positions a group's requests hold (page granular): its pages in use less those only the prefix
// cache holds, which SGLang counts as free (sglang:num_used_tokens, /get_load).
int64_t held_kv_tokens(const GroupStats& g, int64_t page_size);

}  // namespace dpserve
