#include "bench_client/stream_request.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench_client/sse_parser.h"
#include "core/check.h"

namespace dpserve::bench {

using json = nlohmann::json;

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

StreamClient::StreamClient(ClientConfig cfg) : cfg_(std::move(cfg)) {
  const std::string& u = cfg_.base_url;
  const size_t sep = u.find("://");
  if (sep == std::string::npos || (u.compare(0, sep, "http") != 0 && u.compare(0, sep, "https") != 0))
    fail("--base-url must look like http://host:port, got '{}'", u);
  const size_t slash = u.find('/', sep + 3);
  scheme_host_port_ = u.substr(0, slash);
  if (scheme_host_port_.size() == sep + 3) fail("--base-url has no host: '{}'", u);
  std::string prefix = slash == std::string::npos ? "" : u.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (cfg_.endpoint.empty() || cfg_.endpoint[0] != '/') fail("--endpoint must start with '/', got '{}'", cfg_.endpoint);
  path_ = prefix + cfg_.endpoint;
  // Bounded above: the timeout becomes integer microseconds for the socket, where inf or 1e300 overflow.
  if (!(cfg_.timeout_s > 0 && cfg_.timeout_s <= kMaxTimeoutSeconds))
    fail("--timeout must be > 0 and at most {:g} seconds, got {}", kMaxTimeoutSeconds, cfg_.timeout_s);
  if (!cfg_.extra_body.empty()) {
    try {
      extra_ = json::parse(cfg_.extra_body);
    } catch (const std::exception& e) {
      fail("--extra-request-body is not JSON: {}", e.what());
    }
    if (!extra_.is_object()) fail("--extra-request-body must be a JSON object, got {}", cfg_.extra_body);
  }
}

std::string StreamClient::body_for(const BenchRequest& req, int64_t max_tokens) const {
  json b;
  if (cfg_.backend == Backend::sglang) {
    if (!req.prompt_ids.empty())
      b["input_ids"] = req.prompt_ids;
    else
      b["text"] = req.prompt;
    json sp{{"max_new_tokens", max_tokens}, {"temperature", 0.0}};
    if (cfg_.ignore_eos) sp["ignore_eos"] = true;
    b["sampling_params"] = sp;
    b["stream"] = true;
  } else {
    if (cfg_.endpoint.find("chat") != std::string::npos)
      b["messages"] = json::array({json{{"role", "user"}, {"content", req.prompt}}});
    else if (cfg_.prompt_token_ids && !req.prompt_ids.empty())
      b["prompt"] = req.prompt_ids;
    else
      b["prompt"] = req.prompt;
    b["max_tokens"] = max_tokens;
    b["temperature"] = 0.0;
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
    if (cfg_.ignore_eos) b["ignore_eos"] = true;
  }
  if (!cfg_.model.empty()) b["model"] = cfg_.model;
  for (const auto& [k, v] : extra_.items()) b[k] = v;
  return b.dump();
}

namespace {

// Chunk interpretation per backend: how much new text a chunk carries and what usage it reports.
struct ChunkState {
  Backend backend;
  size_t sglang_text_len = 0;  // SGLang streams the cumulative text
};

std::string chunk_text(ChunkState& st, const json& j) {
  if (st.backend == Backend::sglang) {
    if (!j.contains("text") || !j["text"].is_string()) return {};
    const std::string& t = j["text"].get_ref<const std::string&>();
    if (t.size() <= st.sglang_text_len) return {};
    std::string d = t.substr(st.sglang_text_len);
    st.sglang_text_len = t.size();
    return d;
  }
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return {};
  const json& c = j["choices"][0];
  if (c.contains("text") && c["text"].is_string()) return c["text"].get<std::string>();
  if (c.contains("delta") && c["delta"].is_object()) {
    const json& d = c["delta"];
    if (d.contains("content") && d["content"].is_string()) return d["content"].get<std::string>();
  }
  return {};
}

void read_usage(Backend backend, const json& j, RequestResult& r) {
  const json* u = nullptr;
  if (backend == Backend::sglang) {
    if (j.contains("meta_info") && j["meta_info"].is_object()) u = &j["meta_info"];
  } else if (j.contains("usage") && j["usage"].is_object()) {
    u = &j["usage"];
  }
  if (!u) return;
  if (u->contains("completion_tokens") && (*u)["completion_tokens"].is_number_integer()) {
    r.output_tokens = (*u)["completion_tokens"].get<int64_t>();
    r.usage_from_server = true;
  }
  if (u->contains("prompt_tokens") && (*u)["prompt_tokens"].is_number_integer())
    r.prompt_tokens = (*u)["prompt_tokens"].get<int64_t>();
}

}  // namespace

RequestResult StreamClient::send(const BenchRequest& req, double clock_origin, int64_t max_tokens_override) const {
  RequestResult r;
  const int64_t max_tokens = max_tokens_override > 0 ? max_tokens_override : req.output_len;
  const std::string body = body_for(req, max_tokens);

  httplib::Client cli(scheme_host_port_);
  const auto to = std::chrono::duration<double>(cfg_.timeout_s);
  cli.set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(to).count() / 1000000,
                             std::chrono::duration_cast<std::chrono::microseconds>(to).count() % 1000000);
  cli.set_read_timeout(to);
  cli.set_write_timeout(to);
  cli.set_keep_alive(false);

  httplib::Request hreq;
  hreq.method = "POST";
  hreq.path = path_;
  hreq.body = body;
  hreq.set_header("Content-Type", "application/json");
  hreq.set_header("Accept", "text/event-stream");
  if (!cfg_.api_key.empty()) hreq.set_header("Authorization", "Bearer " + cfg_.api_key);

  int status = 0;
  std::string error_body;
  bool timed_out = false, stop = false;
  double now = 0, last = 0;
  ChunkState cs{cfg_.backend};
  SseParser parser;
  const double t0 = steady_seconds();
  r.start_s = t0 - clock_origin;

  SseParser::Handler on_event = [&](SseEvent&& e) {
    if (stop) return;
    if (e.data == "[DONE]") {
      r.done_seen = true;
      return;
    }
    if (e.event == "error") {
      r.error = "server error in stream: " + e.data.substr(0, 500);
      stop = true;
      return;
    }
    json j = json::parse(e.data, nullptr, false);
    if (j.is_discarded()) {
      r.error = "unparseable stream chunk: " + e.data.substr(0, 200);
      stop = true;
      return;
    }
    if (j.is_object() && j.contains("error")) {
      r.error = "server error in stream: " + j["error"].dump().substr(0, 500);
      stop = true;
      return;
    }
    if (!j.is_object()) return;
    const std::string text = chunk_text(cs, j);
    if (!text.empty()) {
      if (r.content_chunks == 0)
        r.ttft_s = now - t0;
      else
        r.itl_s.push_back(now - last);
      last = now;
      ++r.content_chunks;
    }
    read_usage(cfg_.backend, j, r);
  };

  hreq.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  hreq.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    now = steady_seconds();
    if (now - t0 > cfg_.timeout_s) {
      timed_out = true;
      return false;
    }
    if (status != 200) {
      error_body.append(data, std::min(n, size_t(2000) - std::min(error_body.size(), size_t(2000))));
      return true;
    }
    try {
      parser.feed(std::string_view(data, n), on_event);
    } catch (const Error& e) {
      r.error = e.what();
      stop = true;
    }
    return !stop;
  };

  httplib::Response hres;
  httplib::Error herr = httplib::Error::Success;
  const bool ok = cli.send(hreq, hres, herr);
  now = steady_seconds();
  r.e2e_s = now - t0;
  if (ok && status == 200 && !stop) {
    try {
      parser.finish(on_event);
    } catch (const Error& e) {
      r.error = e.what();
    }
  }
  if (!r.usage_from_server) r.output_tokens = r.content_chunks;

  if (timed_out || (!ok && herr == httplib::Error::Read && r.e2e_s >= cfg_.timeout_s)) {
    r.error = "timed out after " + std::to_string(int64_t(std::lround(cfg_.timeout_s))) + " s";
  } else if (!r.error.empty()) {
    // set by the stream itself
  } else if (!ok) {
    r.error = "HTTP request failed: " + httplib::to_string(herr);
  } else if (status != 200) {
    r.error = "HTTP " + std::to_string(status) + ": " + error_body;
  } else if (r.content_chunks == 0) {
    r.error = "the stream carried no generated text";
  }
  r.success = r.error.empty();
  return r;
}

}  // namespace dpserve::bench
