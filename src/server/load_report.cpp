#include "server/load_report.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "server/metrics.h"
#include "server/openai_error.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

double rounded(double v, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

}  // namespace

json load_report(const EngineStats& stats, const json& info, const LoadReportQuery& q, const std::string& timestamp) {
  const int64_t page_size = info.value("page_size", int64_t(1));
  const int64_t max_running = info.value("max_running_requests", int64_t(0));
  const bool all = q.include.empty() || q.include.count("all");
  auto wants = [&](const char* s) { return all || q.include.count(s) > 0; };
  const bool speculating = !info.value("speculative_algorithm", json()).is_null();
  json loads = json::array();
  for (const GroupStats& g : stats.groups) {
    if (q.dp_rank && *q.dp_rank != g.dp_rank) continue;
    const int64_t used = held_kv_tokens(g, page_size);
    const int64_t capacity = g.kv_pages_total * page_size;
    const double token_usage = capacity > 0 ? double(used) / double(capacity) : 0.0;
    // SGLang's: the larger of the running requests' share of the concurrency bound and the token
    // usage against a 90 % mark.
    const double utilization =
        std::max(max_running > 0 ? double(g.running) / double(max_running) : 0.0, token_usage / 0.9);
    json l = {
        {"dp_rank", g.dp_rank},
        {"num_running_reqs", g.running},
        {"num_waiting_reqs", g.waiting},
        // Queued prompts are not matched against the prefix cache until they are scheduled,
        // so all their tokens count (SGLang's figure when it does not match in the queue).
        {"num_waiting_uncached_tokens", g.waiting_tokens},
        {"num_used_tokens", used},
        {"num_total_tokens", used + g.waiting_tokens},
        {"max_total_num_tokens", capacity},
        {"max_running_requests", max_running},
        {"token_usage", rounded(token_usage, 4)},
        {"gen_throughput", rounded(g.gen_throughput, 2)},
        {"cache_hit_rate",
         rounded(g.prefix_query_tokens > 0 ? double(g.prefix_hit_tokens) / double(g.prefix_query_tokens) : 0.0, 4)},
        {"utilization", rounded(utilization, 4)}};
    if (wants("memory"))
      l["memory"] = {{"weight_gb", rounded(double(info.value("weight_bytes", int64_t(0))) / 1e9, 3)},
                     {"kv_cache_gb", rounded(double(g.kv_pages_total * g.kv_bytes_per_page) / 1e9, 3)},
                     {"graph_gb", 0.0},
                     {"token_capacity", capacity}};
    // The engine counts speculation over all its groups: each entry carries the same figures.
    if (wants("spec") && speculating && stats.spec_verify_steps_total > 0)
      l["speculative"] = {
          {"accept_length", 1.0 + double(stats.spec_accepted_tokens_total) / double(stats.spec_verify_steps_total)},
          {"accept_rate", stats.spec_draft_tokens_total > 0
                              ? double(stats.spec_accepted_tokens_total) / double(stats.spec_draft_tokens_total)
                              : 0.0}};
    if (wants("disagg"))
      l["disaggregation"] = {{"mode", "null"},
                             {"prefill_bootstrap_queue_reqs", 0},
                             {"prefill_inflight_queue_reqs", 0},
                             {"decode_prealloc_queue_reqs", 0},
                             {"decode_transfer_queue_reqs", 0},
                             {"decode_retracted_queue_reqs", 0},
                             {"kv_transfer_speed_gb_s", 0.0},
                             {"kv_transfer_latency_ms", 0.0}};
    loads.push_back(std::move(l));
  }
  return {{"timestamp", timestamp},
          {"version", info.value("version", std::string())},
          {"accelerator", nullptr},
          {"num_accelerators", 0},
          {"loads", std::move(loads)}};
}

std::string load_report_prometheus(const json& report) {
  // One family per figure (sections' figures as sglang_<section>_<name>), a sample per group.
  std::map<std::string, std::string> families;
  std::vector<std::string> order;
  std::map<std::string, std::string> help;
  auto sample = [&](const std::string& name, const std::string& field, int64_t dp_rank, const json& v) {
    if (!v.is_number()) return;
    if (!families.count(name)) {
      order.push_back(name);
      help[name] = field;
    }
    families[name] += fmt::format("{}{{dp_rank=\"{}\"}} {}\n", name, dp_rank, v.dump());
  };
  for (const json& l : report["loads"]) {
    const int64_t r = l["dp_rank"];
    for (const auto& [k, v] : l.items()) {
      if (k == "dp_rank") continue;
      if (v.is_object()) {
        const std::string prefix = k == "speculative" ? "spec" : k == "disaggregation" ? "disagg" : k;
        for (const auto& [sk, sv] : v.items()) sample("sglang_" + prefix + "_" + sk, k + "." + sk, r, sv);
      } else {
        sample("sglang_" + k, k, r, v);
      }
    }
  }
  std::string out;
  for (const std::string& name : order)
    out +=
        fmt::format("# HELP {0} /v1/loads {1} per DP group\n# TYPE {0} gauge\n{2}", name, help[name], families[name]);
  return out;
}

}  // namespace dpserve
