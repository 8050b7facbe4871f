#include "server/route_helpers.h"

#include <fmt/format.h>

#include "server/connection_watch.h"
#include "server/openai_error.h"
#include "server/request_body.h"

namespace dpserve {

AccessInfo& access_info() {
  thread_local AccessInfo info;
  return info;
}

void send_json(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

std::shared_ptr<void> admit_generation(ServerContext& ctx, const httplib::Request& req) {
  if (ctx.draining.load())
    throw ApiError(503, "The server is shutting down and takes no new requests", "", "service_unavailable_error",
                   "server_draining");
  if (!ctx.engine.healthy())
    throw ApiError(503, "The engine is not ready (loading, or a rank failed)", "", "service_unavailable_error",
                   "engine_unavailable");
  // Taken with one atomic step, so concurrent arrivals cannot all pass a check made before any counted.
  const int64_t before = ctx.metrics.http_inflight.fetch_add(1);
  std::shared_ptr<void> slot(nullptr, [&ctx](void*) { --ctx.metrics.http_inflight; });
  if (ctx.opts.max_queued_requests > 0 && before >= ctx.opts.max_queued_requests) {
    ctx.metrics.rejected_overload.fetch_add(1);
    // 429 (not 503): the server is healthy but over its load bound, which OpenAI clients treat as
    // "back off and retry" (with Retry-After); 503 stays for draining and a failed engine.
    throw ApiError(429,
                   fmt::format("Too many requests in flight (limit {}, --max-queued-requests); retry later",
                               ctx.opts.max_queued_requests),
                   "", "rate_limit_error", "queue_full");
  }
  return slot;
}

void post_route(httplib::Server& svr, ServerContext& ctx, const std::string& pattern, httplib::Server::Handler handler) {
  BodyLimits limits;
  limits.max_bytes = ctx.opts.max_body_bytes;
  limits.deadline = std::chrono::milliseconds(int64_t(ctx.opts.http_request_timeout_s * 1000));
  limits.cut_off = &ctx.metrics.read_deadline_closed;
  post_with_body_limits(svr, pattern, limits, std::move(handler));
}

std::function<bool()> client_gone_fn(ServerContext& ctx, const httplib::Request& req) {
  auto watch = std::make_shared<ConnectionWatch>(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  return [watch, &ctx] { return ctx.stopping.load() || watch->closed(); };
}

}  // namespace dpserve
