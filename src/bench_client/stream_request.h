// One streamed generation request against a server, timed the way bench_serving times it: TTFT to the
// first chunk with content, the gaps between content chunks (ITL), end-to-end latency, token counts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_client/dataset.h"

namespace dpserve::bench {

enum class Backend {
  openai,  // POST {endpoint} (default /v1/completions; a path containing "chat" sends messages)
  sglang,  // POST /generate with input_ids (or text) and sampling_params
};

// Largest --timeout (about 11.6 days): the socket timeouts are integer microseconds.
inline constexpr double kMaxTimeoutSeconds = 1e6;

struct ClientConfig {
  std::string base_url;  // http://host:port[/prefix]
  Backend backend = Backend::openai;
  std::string endpoint = "/v1/completions";
  std::string model;         // "model" field; omitted when empty
  std::string api_key;       // Authorization: Bearer, when set
  double timeout_s = 300;    // whole request, and the longest silence between two reads
  bool ignore_eos = true;    // generate exactly output_len tokens where the server supports it
  // openai completions: send the prompt as its token ids (an array "prompt", as the OpenAI API
  // allows) instead of text, so servers with different tokenizers see the same tokens.
  bool prompt_token_ids = false;
  // Fields added to every request body (SGLang's --extra-request-body), e.g. a logit_bias; a key
  // the client sets itself is replaced. A JSON object (text), empty for none.
  std::string extra_body;
};

struct RequestResult {
  bool success = false;
  std::string error;
  double start_s = 0;        // send time, seconds since the benchmark started
  double ttft_s = 0;         // to the first chunk carrying text
  std::vector<double> itl_s; // between consecutive chunks carrying text
  double e2e_s = 0;
  int64_t output_tokens = 0; // the server's usage count when it sent one, else the content chunks
  int64_t prompt_tokens = -1;// the server's usage count, -1 when it sent none
  int64_t content_chunks = 0;
  bool usage_from_server = false;
  bool done_seen = false;    // the stream ended with [DONE]
};

// Safe to call from many threads at once; each call opens its own connection.
class StreamClient {
 public:
  explicit StreamClient(ClientConfig cfg);
  const ClientConfig& config() const { return cfg_; }

  // `clock_origin` is the benchmark's start (steady_clock seconds) so start_s is comparable.
  // `max_tokens_override` > 0 replaces the request's output_len (the warm-up request).
  RequestResult send(const BenchRequest& req, double clock_origin, int64_t max_tokens_override = 0) const;

  // The JSON body sent for a request (exposed for tests and --dry-run style checks).
  std::string body_for(const BenchRequest& req, int64_t max_tokens) const;

 private:
  ClientConfig cfg_;
  std::string scheme_host_port_, path_;
  nlohmann::json extra_ = nlohmann::json::object();  // cfg_.extra_body, parsed
};

// Seconds on the steady clock; the common time base of start_s and clock_origin.
double steady_seconds();

}  // namespace dpserve::bench
