// Drives a benchmark: sends every request at its arrival time with at most max_concurrency in flight
// (one worker thread per slot), collects the per-request timings.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "bench_client/dataset.h"
#include "bench_client/stream_request.h"

namespace dpserve::bench {

struct RunConfig {
  double request_rate = INFINITY;  // requests/s (Poisson) or infinity: all at once
  size_t max_concurrency = 0;      // 0: unlimited (capped at kMaxWorkers threads)
  uint64_t seed = 0;
  bool progress = false;
  size_t warmup_requests = 1;      // sent first, one at a time, not measured; a failure aborts the run
  int64_t warmup_max_tokens = 16;
};

constexpr size_t kMaxWorkers = 1024;

struct RunOutcome {
  std::vector<RequestResult> results;  // same order as the requests
  double duration_s = 0;               // first send to last completion
  size_t workers = 0;
};

// Throws dpserve::Error when the warm-up request fails (wrong URL, server down, bad model name), so a
// misconfigured run stops at once with the server's message instead of N identical failures.
RunOutcome run_benchmark(const StreamClient& client, const std::vector<BenchRequest>& requests,
                         const RunConfig& cfg);

}  // namespace dpserve::bench
