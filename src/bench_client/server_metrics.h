// The server's own counters around a benchmark run: dpserve's speculative-decoding counters read
// from its Prometheus /metrics, so `bench serve` reports acceptance beside throughput. Other
// servers (llama-server, SGLang) have no such lines; the reading is then empty.
#pragma once

#include <optional>
#include <string>

namespace dpserve::bench {

struct SpecCounters {
  double draft_tokens = 0, accepted_tokens = 0, verify_steps = 0;
};

// Parses dpserve_spec_{draft_tokens,accepted_tokens,verify_steps}_total from a /metrics body;
// nullopt when any is missing.
std::optional<SpecCounters> parse_spec_counters(const std::string& metrics_text);

// GET base_url + "/metrics" (with the API key when given); nullopt when it cannot be read or has
// no such counters. Waits at most timeout_s (the run's --timeout) and never over 10 s: a silent server
// must not hold the run up longer than one of its requests would.
std::optional<SpecCounters> read_spec_counters(const std::string& base_url, const std::string& api_key,
                                               double timeout_s = 10);

}  // namespace dpserve::bench
