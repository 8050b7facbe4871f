// The lines of a batch job (OpenAI's /v1/batches, Anthropic's /v1/messages/batches), run through the
// route handlers an HTTP client reaches, on this process's threads, as many at a time as the engine runs.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/auth.h"
#include "server/server_context.h"

namespace dpserve {

struct BatchLine {
  std::string custom_id;
  std::string body;     // JSON text
  std::string refused;  // a field a batch line cannot set to true ("stream", "background"), if it does
};

// Runs `lines` through `route` (as a POST of `path`, by `caller`), as many at a time as the engine runs
// (--max-running-requests times the DP groups, at most 256; a 429 from the queue bounds is retried),
// until each has ended or `stop()` holds: then none starts and those in flight stop as a request whose
// client hung up. `ended(i, status, body)` is called from the worker threads for each line that ended
// (a refused line: its 400, OpenAI's error shape as every route's); a stopped line is not reported.
void run_batch_lines(ServerContext& ctx, const std::function<void(const httplib::Request&, httplib::Response&)>& route,
                     const std::string& path, const std::vector<BatchLine>& lines, const Caller& caller,
                     const std::function<bool()>& stop,
                     const std::function<void(size_t i, int status, nlohmann::json body)>& ended);

}  // namespace dpserve
