#include "bench_client/report.h"

#include <algorithm>

#include <fmt/format.h>

namespace dpserve::bench {

using json = nlohmann::json;

BenchMetrics compute_metrics(const std::vector<BenchRequest>& requests, const std::vector<RequestResult>& results,
                             double duration_s) {
  BenchMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttft, itl, tpot, e2e;
  double e2e_sum = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const RequestResult& r = results[i];
    if (!r.success) {
      ++m.failed;
      if (m.errors.size() < 5 && std::find(m.errors.begin(), m.errors.end(), r.error) == m.errors.end())
        m.errors.push_back(r.error);
      continue;
    }
    ++m.completed;
    m.total_input_tokens += r.prompt_tokens >= 0 ? r.prompt_tokens : requests[i].prompt_len;
    m.total_output_tokens += r.output_tokens;
    if (r.usage_from_server) ++m.usage_from_server;
    ttft.push_back(r.ttft_s * 1e3);
    for (double g : r.itl_s) itl.push_back(g * 1e3);
    if (r.output_tokens > 1) tpot.push_back((r.e2e_s - r.ttft_s) * 1e3 / double(r.output_tokens - 1));
    e2e.push_back(r.e2e_s * 1e3);
    e2e_sum += r.e2e_s;
  }
  if (duration_s > 0) {
    m.request_throughput = double(m.completed) / duration_s;
    m.input_throughput = double(m.total_input_tokens) / duration_s;
    m.output_throughput = double(m.total_output_tokens) / duration_s;
    m.total_throughput = m.input_throughput + m.output_throughput;
    m.concurrency = e2e_sum / duration_s;
  }
  m.ttft_ms = summarize(ttft);
  m.itl_ms = summarize(itl);
  m.tpot_ms = summarize(tpot);
  m.e2e_ms = summarize(e2e);
  return m;
}

namespace {

void put_summary(json& j, const std::string& name, const Summary& s) {
  j["mean_" + name + "_ms"] = s.mean;
  j["median_" + name + "_ms"] = s.median;
  j["std_" + name + "_ms"] = s.std;
  j["p90_" + name + "_ms"] = s.p90;
  j["p99_" + name + "_ms"] = s.p99;
}

}  // namespace

json result_json(const BenchMetrics& m, const json& settings) {
  json j = settings;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["duration"] = m.duration_s;
  j["total_input_tokens"] = m.total_input_tokens;
  j["total_output_tokens"] = m.total_output_tokens;
  j["request_throughput"] = m.request_throughput;
  j["input_throughput"] = m.input_throughput;
  j["output_throughput"] = m.output_throughput;
  j["total_throughput"] = m.total_throughput;
  j["concurrency"] = m.concurrency;
  j["usage_from_server"] = m.usage_from_server;
  put_summary(j, "ttft", m.ttft_ms);
  put_summary(j, "itl", m.itl_ms);
  put_summary(j, "tpot", m.tpot_ms);
  put_summary(j, "e2e_latency", m.e2e_ms);
  j["errors"] = m.errors;
  return j;
}

std::string format_report(const BenchMetrics& m, const json& settings) {
  std::string o;
  auto line = [&o](std::string_view k, const std::string& v) { o += fmt::format("{:<40}{:>14}\n", k, v); };
  auto num = [](double x) { return fmt::format("{:.2f}", x); };
  auto title = [&o](std::string_view t) { o += fmt::format("{:-^54}\n", fmt::format(" {} ", t)); };
  title("Serving Benchmark Result");
  line("Backend:", settings.value("backend", ""));
  // As bench_serving prints them: inf bare (not a quoted JSON string), an unlimited concurrency "not set".
  auto setting = [&settings](const char* key) -> std::string {
    if (!settings.contains(key) || settings[key].is_null()) return "not set";
    return settings[key].is_string() ? settings[key].get<std::string>() : settings[key].dump();
  };
  line("Traffic request rate:", setting("request_rate"));
  line("Max request concurrency:", setting("max_concurrency"));
  line("Successful requests:", std::to_string(m.completed));
  line("Failed requests:", std::to_string(m.failed));
  line("Benchmark duration (s):", num(m.duration_s));
  line("Total input tokens:", std::to_string(m.total_input_tokens));
  line("Total generated tokens:", std::to_string(m.total_output_tokens));
  line("Request throughput (req/s):", num(m.request_throughput));
  line("Input token throughput (tok/s):", num(m.input_throughput));
  line("Output token throughput (tok/s):", num(m.output_throughput));
  line("Total token throughput (tok/s):", num(m.total_throughput));
  line("Concurrency:", num(m.concurrency));
  auto block = [&](std::string_view name, const Summary& s) {
    title(name);
    line(fmt::format("Mean {} (ms):", name), num(s.mean));
    line(fmt::format("Median {} (ms):", name), num(s.median));
    line(fmt::format("P90 {} (ms):", name), num(s.p90));
    line(fmt::format("P99 {} (ms):", name), num(s.p99));
  };
  block("E2E Latency", m.e2e_ms);
  block("TTFT", m.ttft_ms);
  block("ITL", m.itl_ms);
  block("TPOT", m.tpot_ms);
  o += std::string(54, '=') + "\n";
  if (m.completed && m.usage_from_server < m.completed)
    o += fmt::format("note: {} of {} requests had no usage from the server; their output tokens are chunk counts\n",
                     m.completed - m.usage_from_server, m.completed);
  for (const auto& e : m.errors) o += "error: " + e + "\n";
  return o;
}

}  // namespace dpserve::bench
