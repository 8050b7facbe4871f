// Aggregation: hand-computed totals, throughputs and latency summaries from known per-request results.
#include <gtest/gtest.h>

#include "bench_client/report.h"

namespace dpserve::bench {
namespace {

TEST(BenchReport, MetricsFromKnownResults) {
  std::vector<BenchRequest> reqs(3);
  reqs[0].prompt_len = 10;
  reqs[1].prompt_len = 20;
  reqs[2].prompt_len = 30;
  std::vector<RequestResult> res(3);
  res[0].success = true;  // server usage: 12 prompt tokens, 5 output tokens
  res[0].ttft_s = 0.1;
  res[0].itl_s = {0.01, 0.03, 0.02, 0.04};
  res[0].e2e_s = 0.2;
  res[0].output_tokens = 5;
  res[0].prompt_tokens = 12;
  res[0].usage_from_server = true;
  res[1].success = true;  // no usage: dataset's 20 prompt tokens, 3 content chunks
  res[1].ttft_s = 0.3;
  res[1].itl_s = {0.05, 0.05};
  res[1].e2e_s = 0.4;
  res[1].output_tokens = 3;
  res[2].success = false;
  res[2].error = "HTTP 500: boom";
  const BenchMetrics m = compute_metrics(reqs, res, 2.0);
  EXPECT_EQ(m.completed, 2u);
  EXPECT_EQ(m.failed, 1u);
  EXPECT_EQ(m.total_input_tokens, 32);
  EXPECT_EQ(m.total_output_tokens, 8);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(m.input_throughput, 16.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 4.0);
  EXPECT_DOUBLE_EQ(m.total_throughput, 20.0);
  EXPECT_DOUBLE_EQ(m.concurrency, 0.3);  // (0.2 + 0.4) / 2
  EXPECT_DOUBLE_EQ(m.ttft_ms.mean, 200.0);
  EXPECT_DOUBLE_EQ(m.e2e_ms.median, 300.0);
  // ITLs in ms: 10 20 30 40 50 50 -> mean 33.33, median 35, p90 at rank 4.5 -> 50.
  EXPECT_EQ(m.itl_ms.count, 6u);
  EXPECT_NEAR(m.itl_ms.mean, 200.0 / 6.0, 1e-9);
  EXPECT_NEAR(m.itl_ms.median, 35.0, 1e-9);
  EXPECT_NEAR(m.itl_ms.p90, 50.0, 1e-9);
  // TPOT: (0.2 - 0.1) / 4 = 25 ms and (0.4 - 0.3) / 2 = 50 ms.
  EXPECT_NEAR(m.tpot_ms.mean, 37.5, 1e-9);
  EXPECT_EQ(m.usage_from_server, 1u);
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0], "HTTP 500: boom");

  const nlohmann::json j = result_json(m, {{"backend", "openai"}, {"request_rate", "inf"}});
  EXPECT_EQ(j["backend"], "openai");
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_DOUBLE_EQ(j["output_throughput"].get<double>(), 4.0);
  EXPECT_NEAR(j["median_itl_ms"].get<double>(), 35.0, 1e-9);
  EXPECT_NEAR(j["p99_e2e_latency_ms"].get<double>(), 398.0, 1e-9);  // 200 + 0.99 * 200
  const std::string text = format_report(m, {{"backend", "openai"}});
  EXPECT_NE(text.find("Successful requests:"), std::string::npos);
  EXPECT_NE(text.find("HTTP 500: boom"), std::string::npos);
}

// The table shows the settings as bench_serving does: a rate of inf bare, a number as itself, no
// concurrency limit as "not set" (not JSON's "\"inf\"" and null).
TEST(Report, SettingsPrintedAsText) {
  const BenchMetrics m = compute_metrics({}, {}, 1.0);
  auto row = [](const std::string& text, const std::string& key) {
    const size_t at = text.find(key);
    if (at == std::string::npos) return std::string("<missing>");
    const size_t end = text.find('\n', at);
    std::string v = text.substr(at + key.size(), end - at - key.size());
    return v.substr(v.find_first_not_of(' '));
  };
  const std::string unlimited =
      format_report(m, {{"request_rate", "inf"}, {"max_concurrency", nlohmann::json()}});
  EXPECT_EQ(row(unlimited, "Traffic request rate:"), "inf");
  EXPECT_EQ(row(unlimited, "Max request concurrency:"), "not set");
  const std::string limited = format_report(m, {{"request_rate", 4.5}, {"max_concurrency", 8}});
  EXPECT_EQ(row(limited, "Traffic request rate:"), "4.5");
  EXPECT_EQ(row(limited, "Max request concurrency:"), "8");
}

}  // namespace
}  // namespace dpserve::bench
