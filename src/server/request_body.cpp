#include "server/request_body.h"

#include <memory>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/openai_error.h"

namespace dpserve {

namespace {

// Answers with `status` and then closes the connection: the unread rest of the body would
// otherwise be parsed as the next request. cpp-httplib offers no call for closing, but it ends a
// connection whose response write fails, so the body is written in full and then the provider
// reports failure. The "Connection: close" header tells the client, and tells our error handler
// that this response is already made.
void answer_and_close(httplib::Response& res, int status, const std::string& message, const std::string& code) {
  auto body = std::make_shared<std::string>(error_body(status, message, "", code).dump());
  res.status = status;
  res.body.clear();
  res.set_header("Connection", "close");
  res.set_content_provider(body->size(), "application/json",
                           [body](size_t offset, size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return false;
                           });
}

}  // namespace

void post_with_body_limits(httplib::Server& svr, const std::string& pattern, const BodyLimits& limits,
                           httplib::Server::Handler handler) {
  svr.Post(pattern, [limits, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                                            const httplib::ContentReader& reader) {
    // Headers are in when a handler runs (cpp-httplib reads the body only when asked), so the
    // deadline covers exactly the body.
    const auto start = std::chrono::steady_clock::now();
    std::string body;
    // RFC 9112 6.3: a request with neither Content-Length nor Transfer-Encoding has no body (cpp-httplib
    // would read until the client closes).
    const bool has_body = req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
    bool late = false;
    bool too_large = false;
    if (has_body) {
      const bool ok = reader([&](const char* data, size_t n) {
        if (limits.deadline.count() > 0 && std::chrono::steady_clock::now() - start > limits.deadline) {
          late = true;
          return false;
        }
        // cpp-httplib checks only a declared Content-Length against the limit; this also bounds chunked bodies.
        if (body.size() + n > limits.max_bytes) {
          too_large = true;
          return false;
        }
        body.append(data, n);
        return true;
      });
      if (late) {
        if (limits.cut_off) limits.cut_off->fetch_add(1);
        spdlog::warn("client {} {} took longer than {} ms to send its request body ({} bytes in): connection closed",
                     req.remote_addr, req.remote_port, limits.deadline.count(), body.size());
        answer_and_close(res, 408,
                         fmt::format("The request body took longer than {} s to arrive (--http-request-timeout)",
                                     double(limits.deadline.count()) / 1000),
                         "request_timeout");
        return;
      }
      if (too_large) {
        answer_and_close(res, 413, "The request body is larger than the server's limit (--max-body-bytes)",
                         "body_too_large");
        return;
      }
      if (!ok) {
        // A declared Content-Length over the limit: cpp-httplib has read past the body and set 413,
        // and the connection can go on; our error handler writes the error body.
        if (res.status == 413) return;
        // The client went silent (--http-read-timeout), hung up, or framed the body wrongly.
        answer_and_close(res, 400, "The request body could not be read completely", "");
        return;
      }
    }
    // The body goes into cpp-httplib's own Request (a non-const object in its connection loop, so
    // this is well defined) rather than a copy: it lives until the response, streamed or not, is
    // written, which a streaming provider that refers to the request relies on.
    const_cast<httplib::Request&>(req).body = std::move(body);
    handler(req, res);
  });
}

}  // namespace dpserve
