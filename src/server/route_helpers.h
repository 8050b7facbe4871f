// What every route handler does alike: admission of generation work, bounded POST bodies, JSON
// replies, noticing that the client left, and the facts the access log prints.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/server_context.h"

namespace dpserve {

// Per-request facts for the access log line, filled by the route on the worker thread that also
// writes the response and logs it.
struct AccessInfo {
  std::chrono::steady_clock::time_point start;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::string finish;
};
AccessInfo& access_info();

void send_json(httplib::Response& res, int status, const nlohmann::json& j);
// 503 when the server drains, 429 when --max-queued-requests generation requests are in flight.
// Returns the request's in-flight slot, released with its last owner.
std::shared_ptr<void> admit_generation(ServerContext& ctx, const httplib::Request& req);
// Registers a POST route whose body is bounded by --max-body-bytes and --http-request-timeout.
void post_route(httplib::Server& svr, ServerContext& ctx, const std::string& pattern, httplib::Server::Handler handler);
// True once the client of `req` hung up or the server is stopping.
std::function<bool()> client_gone_fn(ServerContext& ctx, const httplib::Request& req);

}  // namespace dpserve
