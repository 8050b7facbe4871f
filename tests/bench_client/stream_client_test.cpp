// The streaming client against a real HTTP server (cpp-httplib) written here, which emits a known
// number of SSE chunks at known delays: token counts must match exactly, and the measured times can
// only be at least the injected delays (arrival k happens no earlier than the server sent it).
#include <gtest/gtest.h>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "bench_client/arrivals.h"
#include "bench_client/bench_run.h"
#include "bench_client/report.h"
#include "bench_client/stream_request.h"
#include "core/check.h"

namespace dpserve::bench {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr int kChunks = 8;
constexpr auto kFirstDelay = 60ms;
constexpr auto kGap = 25ms;

// How the test server streams: OpenAI completions chunks, with or without a usage chunk.
struct ServerScript {
  bool usage = true;
  bool crlf = false;
  bool error_midway = false;
  std::chrono::milliseconds first_delay = kFirstDelay, gap = kGap;
};

class SseTestServer {
 public:
  explicit SseTestServer(ServerScript script) : script_(script) {
    srv_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res); });
    srv_.Post("/generate", [this](const httplib::Request& req, httplib::Response& res) { generate(req, res); });
    srv_.Post("/bad", [](const httplib::Request&, httplib::Response& res) {
      res.status = 400;
      res.set_content(R"({"error":{"message":"model 'x' not found"}})", "application/json");
    });
    srv_.Post("/stall", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(1500ms);  // longer than the client's timeout in the test
      res.set_content("data: [DONE]\n\n", "text/event-stream");
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("cannot bind a loopback port");
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    for (int i = 0; i < 500 && !srv_.is_running(); ++i) std::this_thread::sleep_for(2ms);
  }
  ~SseTestServer() {
    srv_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  json last_body() {
    std::lock_guard<std::mutex> l(mu_);
    return last_body_;
  }
  int max_inflight() const { return max_inflight_.load(); }
  int requests() const { return requests_.load(); }

 private:
  void enter(const httplib::Request& req) {
    std::lock_guard<std::mutex> l(mu_);
    last_body_ = json::parse(req.body);
    ++requests_;
    const int now = ++inflight_;
    if (now > max_inflight_) max_inflight_ = now;
  }

  // Sends chunk k at (request receipt + first_delay + k * gap), measured from one start point so
  // that delays accumulate and lower bounds on arrival times hold exactly.
  void stream(httplib::Response& res, std::function<std::string(int)> chunk, std::string tail) {
    const auto start = std::chrono::steady_clock::now();
    const std::string nl = script_.crlf ? "\r\n" : "\n";
    res.set_chunked_content_provider("text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
      auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
      write(": stream opened" + nl);
      write("data: {\"choices\":[{\"index\":0,\"text\":\"\"}]}" + nl + nl);  // role-like empty chunk
      for (int k = 0; k < kChunks; ++k) {
        std::this_thread::sleep_until(start + script_.first_delay + k * script_.gap);
        if (script_.error_midway && k == kChunks / 2) {
          write("error: {\"code\":500,\"message\":\"slot crashed\"}" + nl + nl);
          break;
        }
        if (!write(chunk(k))) break;
      }
      // Counted out before the last bytes go, so the client cannot start its next request first.
      --inflight_;
      write(tail);
      sink.done();
      return true;
    });
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    enter(req);
    const std::string nl = script_.crlf ? "\r\n" : "\n";
    std::string tail;
    if (script_.usage)
      tail += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":17,\"completion_tokens\":" +
              std::to_string(kChunks) + "}}" + nl + nl;
    tail += "data: [DONE]" + nl + nl;
    stream(
        res,
        [nl](int k) {
          // The chunk boundary of SSE data falls mid-line when a token's text contains an escape.
          return "data: {\"choices\":[{\"index\":0,\"text\":\"t" + std::to_string(k) + "\\n\"}]}" + nl + nl;
        },
        tail);
  }

  void generate(const httplib::Request& req, httplib::Response& res) {
    enter(req);
    stream(
        res,
        [](int k) {
          std::string text;
          for (int i = 0; i <= k; ++i) text += "w" + std::to_string(i);
          json j{{"text", text}, {"meta_info", {{"prompt_tokens", 5}, {"completion_tokens", k + 1}}}};
          return "data: " + j.dump() + "\n\n";
        },
        "data: [DONE]\n\n");
  }

  ServerScript script_;
  httplib::Server srv_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  json last_body_;
  std::atomic<int> inflight_{0}, max_inflight_{0}, requests_{0};
};

double secs(std::chrono::milliseconds ms) { return double(ms.count()) / 1000.0; }

// Arrival k >= first_delay + k * gap after the send, for every k.
void expect_lower_bounds(const RequestResult& r, const ServerScript& s) {
  ASSERT_EQ(r.itl_s.size(), size_t(kChunks - 1));
  double arrival = r.ttft_s;
  EXPECT_GE(arrival, secs(s.first_delay));
  for (int k = 1; k < kChunks; ++k) {
    arrival += r.itl_s[size_t(k - 1)];
    EXPECT_GE(arrival, secs(s.first_delay) + k * secs(s.gap)) << "chunk " << k;
  }
  EXPECT_GE(r.e2e_s, arrival);
}

BenchRequest request(int64_t out = kChunks) {
  BenchRequest r;
  r.prompt = "hello benchmark";
  r.prompt_ids = {1, 2, 3};
  r.prompt_len = 3;
  r.output_len = out;
  return r;
}

TEST(BenchStreamClient, OpenAiCompletionsWithUsage) {
  ServerScript s;
  SseTestServer srv(s);
  StreamClient c({srv.url(), Backend::openai, "/v1/completions", "m1", "", 30, true});
  const RequestResult r = c.send(request(), steady_seconds());
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.content_chunks, kChunks);  // the empty first chunk is not a token
  EXPECT_EQ(r.output_tokens, kChunks);
  EXPECT_TRUE(r.usage_from_server);
  EXPECT_EQ(r.prompt_tokens, 17);
  EXPECT_TRUE(r.done_seen);
  expect_lower_bounds(r, s);
  const json b = srv.last_body();
  EXPECT_EQ(b["prompt"], "hello benchmark");
  EXPECT_EQ(b["max_tokens"], kChunks);
  EXPECT_EQ(b["stream"], true);
  EXPECT_EQ(b["ignore_eos"], true);
  EXPECT_EQ(b["stream_options"]["include_usage"], true);
  EXPECT_EQ(b["model"], "m1");
}

TEST(BenchStreamClient, CountsChunksWhenTheServerSendsNoUsage) {
  ServerScript s;
  s.usage = false;
  s.crlf = true;
  SseTestServer srv(s);
  StreamClient c({srv.url(), Backend::openai, "/v1/completions", "", "", 30, false});
  const RequestResult r = c.send(request(), steady_seconds());
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_FALSE(r.usage_from_server);
  EXPECT_EQ(r.output_tokens, kChunks);
  EXPECT_EQ(r.prompt_tokens, -1);
  expect_lower_bounds(r, s);
  const json b = srv.last_body();
  EXPECT_FALSE(b.contains("ignore_eos"));
  EXPECT_FALSE(b.contains("model"));
}

// --prompt-token-ids: the completions prompt goes out as the dataset's ids, not its decoded text.
TEST(BenchStreamClient, OpenAiCompletionsWithTokenIdPrompt) {
  ServerScript s;
  SseTestServer srv(s);
  ClientConfig cfg{srv.url(), Backend::openai, "/v1/completions", "", "", 30, true};
  cfg.prompt_token_ids = true;
  StreamClient c(cfg);
  const RequestResult r = c.send(request(), steady_seconds());
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.output_tokens, kChunks);
  EXPECT_EQ(srv.last_body()["prompt"], json::array({1, 2, 3}));
}

// --extra-request-body: its fields reach the server in every body, replacing the client's own.
TEST(BenchStreamClient, ExtraRequestBodyIsMergedIntoEveryRequest) {
  ServerScript s;
  SseTestServer srv(s);
  ClientConfig cfg{srv.url(), Backend::openai, "/v1/completions", "m", "", 30, true};
  cfg.extra_body = R"({"logit_bias": {"3": -100}, "temperature": 0.5})";
  StreamClient c(cfg);
  const RequestResult r = c.send(request(), steady_seconds());
  ASSERT_TRUE(r.success) << r.error;
  const json b = srv.last_body();
  EXPECT_EQ(b["logit_bias"], json({{"3", -100}}));
  EXPECT_EQ(b["temperature"], 0.5);
  EXPECT_EQ(b["model"], "m");
  ClientConfig bad = cfg;
  bad.extra_body = "[1, 2]";
  EXPECT_THROW(StreamClient{bad}, Error);
  bad.extra_body = "{not json";
  EXPECT_THROW(StreamClient{bad}, Error);
}

TEST(BenchStreamClient, SglangGenerateWithInputIds) {
  ServerScript s;
  SseTestServer srv(s);
  StreamClient c({srv.url() + "/", Backend::sglang, "/generate", "", "", 30, true});
  const RequestResult r = c.send(request(), steady_seconds());
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.content_chunks, kChunks);  // cumulative text grows once per chunk
  EXPECT_EQ(r.output_tokens, kChunks);   // meta_info.completion_tokens of the last chunk
  EXPECT_EQ(r.prompt_tokens, 5);
  expect_lower_bounds(r, s);
  const json b = srv.last_body();
  EXPECT_EQ(b["input_ids"], json::array({1, 2, 3}));
  EXPECT_EQ(b["sampling_params"]["max_new_tokens"], kChunks);
  EXPECT_EQ(b["sampling_params"]["ignore_eos"], true);
  EXPECT_EQ(b["stream"], true);
}

TEST(BenchStreamClient, FailuresCarryTheReason) {
  ServerScript s;
  s.error_midway = true;
  SseTestServer srv(s);
  StreamClient err({srv.url(), Backend::openai, "/v1/completions", "", "", 30, true});
  RequestResult r = err.send(request(), steady_seconds());
  EXPECT_FALSE(r.success);
  EXPECT_NE(r.error.find("slot crashed"), std::string::npos) << r.error;

  StreamClient bad({srv.url(), Backend::openai, "/bad", "", "", 30, true});
  r = bad.send(request(), steady_seconds());
  EXPECT_FALSE(r.success);
  EXPECT_NE(r.error.find("HTTP 400"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("not found"), std::string::npos) << r.error;

  StreamClient stall({srv.url(), Backend::openai, "/stall", "", "", 0.3, true});
  r = stall.send(request(), steady_seconds());
  EXPECT_FALSE(r.success);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;

  EXPECT_THROW(StreamClient({"localhost:80", Backend::openai, "/v1/completions", "", "", 30, true}), Error);
  EXPECT_THROW(StreamClient({srv.url(), Backend::openai, "v1/completions", "", "", 30, true}), Error);
}

TEST(BenchRun, BoundedConcurrencyAndTotals) {
  ServerScript s;
  s.first_delay = 20ms;
  s.gap = 5ms;
  SseTestServer srv(s);
  StreamClient c({srv.url(), Backend::openai, "/v1/completions", "", "", 30, true});
  std::vector<BenchRequest> reqs(12, request());
  RunConfig rc;
  rc.max_concurrency = 3;
  const RunOutcome out = run_benchmark(c, reqs, rc);
  EXPECT_EQ(out.workers, 3u);
  EXPECT_EQ(srv.requests(), 13);  // one warm-up + 12
  EXPECT_LE(srv.max_inflight(), 3);
  const BenchMetrics m = compute_metrics(reqs, out.results, out.duration_s);
  EXPECT_EQ(m.completed, 12u);
  EXPECT_EQ(m.failed, 0u);
  EXPECT_EQ(m.total_output_tokens, 12 * kChunks);
  EXPECT_EQ(m.total_input_tokens, 12 * 17);  // the server's usage wins over the dataset's 3
  EXPECT_EQ(m.itl_ms.count, size_t(12 * (kChunks - 1)));
  EXPECT_GE(m.ttft_ms.min, 20.0);
}

TEST(BenchRun, PoissonArrivalsAreRespected) {
  ServerScript s;
  s.first_delay = 1ms;
  s.gap = 1ms;
  SseTestServer srv(s);
  StreamClient c({srv.url(), Backend::openai, "/v1/completions", "", "", 30, true});
  std::vector<BenchRequest> reqs(10, request());
  RunConfig rc;
  rc.request_rate = 40;
  rc.seed = 3;
  rc.warmup_requests = 0;
  const RunOutcome out = run_benchmark(c, reqs, rc);
  const auto arrivals = arrival_times(reqs.size(), rc.request_rate, rc.seed);
  ASSERT_GT(arrivals.back(), 0.05);  // the schedule really spreads requests out
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(out.results[i].success) << out.results[i].error;
    EXPECT_GE(out.results[i].start_s, arrivals[i]) << i;
  }
  EXPECT_GE(out.duration_s, arrivals.back());
}

TEST(BenchRun, FailedWarmupStopsWithTheServersMessage) {
  ServerScript s;
  SseTestServer srv(s);
  StreamClient bad({srv.url(), Backend::openai, "/bad", "", "", 30, true});
  std::vector<BenchRequest> reqs(4, request());
  try {
    run_benchmark(bad, reqs, RunConfig{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
  EXPECT_EQ(srv.requests(), 0);  // /bad does not count; nothing else was sent
}

}  // namespace
}  // namespace dpserve::bench
