// POST routes that read their own request body, so it is bounded in size and in time: a client that
// trickles its body (never silent long enough for the per-read timeout) is cut off at a deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <httplib.h>

namespace dpserve {

struct BodyLimits {
  size_t max_bytes = 32 << 20;             // larger bodies get 413
  std::chrono::milliseconds deadline{0};   // from when the headers were in; 0 = none
  std::atomic<int64_t>* cut_off = nullptr;  // counts requests ended at the deadline
};

// Registers `handler` for POST `pattern`; it runs with req.body filled once the whole body is in.
// A body past the deadline gets 408 and one over the limit 413; in both cases the connection is
// then closed, since the rest of that body is never read.
void post_with_body_limits(httplib::Server& svr, const std::string& pattern, const BodyLimits& limits,
                           httplib::Server::Handler handler);

}  // namespace dpserve
