// Aggregate benchmark metrics (bench_serving's set: throughputs, TTFT / ITL / TPOT / E2E percentiles),
// the JSON result line and the human-readable table.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_client/dataset.h"
#include "bench_client/stats.h"
#include "bench_client/stream_request.h"

namespace dpserve::bench {

struct BenchMetrics {
  size_t completed = 0, failed = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  double duration_s = 0;
  double request_throughput = 0, input_throughput = 0, output_throughput = 0, total_throughput = 0;
  double concurrency = 0;  // sum of E2E latencies / duration: the mean number of requests in flight
  Summary ttft_ms, itl_ms, tpot_ms, e2e_ms;
  size_t usage_from_server = 0;  // completed requests whose token counts the server reported
  std::vector<std::string> errors;  // first few distinct failure messages
};

// Only successful requests count towards tokens and latencies. Input tokens are the server's
// prompt_tokens when it reported them, else the dataset's count.
BenchMetrics compute_metrics(const std::vector<BenchRequest>& requests, const std::vector<RequestResult>& results,
                             double duration_s);

// Everything one needs to compare runs later: metrics plus the settings that produced them.
nlohmann::json result_json(const BenchMetrics& m, const nlohmann::json& settings);

std::string format_report(const BenchMetrics& m, const nlohmann::json& settings);

}  // namespace dpserve::bench
