// Reading a request's body off its connection, bounded in size and in time: Content-Length (a plain
// non-negative decimal, nothing else) or chunked transfer coding (extensions and trailer fields
// allowed and ignored). A client that trickles its body, never silent long enough for the per-read
// timeout, is cut off at a deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include <httplib.h>

namespace dpserve {

struct BodyLimits {
  size_t max_bytes = 32 << 20;             // larger bodies get 413
  std::chrono::milliseconds deadline{0};   // from when the headers were in; 0 = none
  std::atomic<int64_t>* cut_off = nullptr;  // counts requests ended at the deadline
};

// How reading one body ended.
struct BodyRead {
  int status = 0;        // 0: the whole body is in; else the status to answer (400, 408, 413, 503)
  std::string message;
  std::string code;      // OpenAI error code
};

// Reads the body `req` declares from `in` into `body`. Headers that declare no body mean an empty
// one (RFC 9112 6.3). `stop()` true (the server is stopping) ends the read with 503.
BodyRead read_request_body(httplib::Stream& in, const httplib::Request& req, const BodyLimits& limits,
                           std::string& body, const std::function<bool()>& stop);

}  // namespace dpserve
