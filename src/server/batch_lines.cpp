#include "server/batch_lines.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <thread>

#include "core/check.h"
#include "server/generation.h"
#include "server/openai_error.h"
#include "server/route_helpers.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxLinesInFlight = 256;  // a thread each

// Lines in flight at once: as many as the engine runs (--max-running-requests in each DP group), so
// that a batch fills the engine's steps as that many clients would; more would only wait in its queue.
size_t lines_in_flight(const ServerContext& ctx) {
  const int64_t per_group = ctx.info.is_object() ? ctx.info.value("max_running_requests", int64_t(8)) : 8;
  return std::clamp<size_t>(size_t(std::max<int64_t>(per_group, 1)) * size_t(std::max(ctx.engine.dp_size(), 1)), 1,
                            kMaxLinesInFlight);
}

// One line through its route as the HTTP server would run it, on this thread: the caller's
// identity, a fresh access record, the route's exceptions turned into the error body a client gets,
// a streamed reply (embeddings) read whole.
std::pair<int, json> dispatch(const ServerContext& ctx,
                              const std::function<void(const httplib::Request&, httplib::Response&)>& route,
                              const std::string& path, const std::string& body, const Caller& caller,
                              const std::function<bool()>& cancelled) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.version = "HTTP/1.1";
  req.body = body;
  req.set_header("Content-Type", "application/json");
  httplib::Response res;
  request_caller() = caller;
  request_cancelled() = cancelled;  // the route stops the line as it would for a client gone
  // Under priority scheduling a line that sets no priority yields to every client's request: the
  // least important value in the scheduler's order.
  if (ctx.opts.priority_scheduling)
    thread_default_priority() =
        ctx.opts.low_priority_values_first ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int32_t>::min();
  struct Reset {
    ~Reset() {  // the thread may serve other work after the batch
      request_cancelled() = nullptr;
      thread_default_priority().reset();
    }
  } reset;
  access_info() = AccessInfo{};
  access_info().start = std::chrono::steady_clock::now();
  try {
    route(req, res);
    if (res.status == 499) return {499, nullptr};  // stopped: the batch was cancelled
    if (res.content_provider_) {
      std::string out;
      bool done = false;
      httplib::DataSink sink;
      sink.write = [&](const char* d, size_t n) {
        out.append(d, n);
        return true;
      };
      sink.done = [&] { done = true; };
      sink.is_writable = [] { return true; };
      while (!done)
        if (!res.content_provider_(out.size(), 0, sink))
          return {500, error_body(500, "The reply could not be completed", "", "engine_fault")};
      res.body = std::move(out);
    }
    json j = json::parse(res.body, nullptr, false);
    if (j.is_discarded()) return {500, error_body(500, "The reply was not JSON")};
    return {res.status > 0 ? res.status : 200, std::move(j)};
  } catch (const ApiError& e) {
    return {e.status(), e.body()};
  } catch (const Error& e) {
    return {400, error_body(400, e.what())};
  } catch (const std::exception& e) {
    return {500, error_body(500, fmt::format("Internal server error: {}", e.what()))};
  }
}

}  // namespace

void run_batch_lines(ServerContext& ctx, const std::function<void(const httplib::Request&, httplib::Response&)>& route,
                     const std::string& path, const std::vector<BatchLine>& lines, const Caller& caller,
                     const std::function<bool()>& stop,
                     const std::function<void(size_t i, int status, nlohmann::json body)>& ended) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; !stop() && (i = next.fetch_add(1)) < lines.size();) {
      int status = 0;
      json body;
      if (!lines[i].refused.empty()) {
        status = 400;
        body = error_body(400, fmt::format("'{}' cannot be true in a batch request", lines[i].refused),
                          lines[i].refused, "invalid_value");
      } else {
        for (;;) {
          std::tie(status, body) = dispatch(ctx, route, path, lines[i].body, caller, stop);
          if (status != 429 || stop()) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the queue is full: wait for room
        }
      }
      if (status == 499) break;  // stopped while it ran: as a line that never started
      ended(i, status, std::move(body));
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < std::min(lines_in_flight(ctx), lines.size()); ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

}  // namespace dpserve
