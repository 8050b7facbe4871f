// State shared by the HTTP routes: the engine and tokenizer they translate for, the parse settings,
// metrics and the running-request registry. Routes hold no state of their own.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/request_parse.h"
#include "server/request_registry.h"
#include "tokenizer/tokenizer.h"

#include <httplib.h>

namespace dpserve {

struct ServerContext {
  ServerContext(ServerOptions o, Engine& e, const Tokenizer& t, nlohmann::json i)
      : opts(std::move(o)), engine(e), tok(t), info(std::move(i)) {}

  ServerOptions opts;
  Engine& engine;
  const Tokenizer& tok;
  nlohmann::json info;
  ParseContext parse;
  Metrics metrics;
  RequestRegistry registry;
  std::atomic<bool> draining{false};
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> next_id{1};
  int64_t created = 0;  // unix seconds at start, for "created" fields

  std::string new_id(const char* prefix);
};

// Per-request facts for the access log line, filled by the route on the worker thread that also
// writes the response and logs it.
struct AccessInfo {
  std::chrono::steady_clock::time_point start;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::string finish;
};
AccessInfo& access_info();

void register_openai_routes(httplib::Server& svr, ServerContext& ctx);
void register_sglang_routes(httplib::Server& svr, ServerContext& ctx);

// Helpers the route files share.
void send_json(httplib::Response& res, int status, const nlohmann::json& j);
// 503 when the server drains, 429 when --max-queued-requests generation requests are in flight.
// Returns the request's in-flight slot, released with its last owner.
std::shared_ptr<void> admit_generation(ServerContext& ctx, const httplib::Request& req);
// Registers a POST route whose body is bounded by --max-body-bytes and --http-request-timeout.
void post_route(httplib::Server& svr, ServerContext& ctx, const std::string& pattern, httplib::Server::Handler handler);
// True once the client of `req` hung up or the server is stopping.
std::function<bool()> client_gone_fn(ServerContext& ctx, const httplib::Request& req);

}  // namespace dpserve
