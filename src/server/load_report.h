// SGLang's /v1/loads report (its supported load API; /get_load is the deprecated one): per DP group,
// the requests and KV tokens it holds and waits for, how full it is, and optional sections, as JSON
// or Prometheus text. Built from the engine's figures as of its last step.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace dpserve {

struct LoadReportQuery {
  std::optional<int64_t> dp_rank;  // only that group
  std::set<std::string> include;   // core, memory, spec, lora, disagg, queues, all (empty: all)
  bool prometheus = false;         // format=prometheus
};

// `info`: the server's settings (/get_server_info: page_size, max_running_requests, weight_bytes,
// speculative_algorithm, version). `timestamp`: ISO 8601, UTC.
nlohmann::json load_report(const EngineStats& stats, const nlohmann::json& info, const LoadReportQuery& q,
                           const std::string& timestamp);
std::string load_report_prometheus(const nlohmann::json& report);

}  // namespace dpserve
