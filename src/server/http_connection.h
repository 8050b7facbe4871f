// cpp-httplib's server with dpserve's own loop over each connection. cpp-httplib 0.11 makes a new
// read buffer per request, so a client's pipelined requests, already read into the old buffer, were
// dropped; it also reads bodies only its own way (no chunked trailers, a negative Content-Length read
// as huge, Range applied to every response). Here one buffered stream serves the whole connection,
// so pipelined requests are answered in order; a gate decides from the headers alone (auth, draining)
// before any body is read; every body is read here, bounded in size and time; Range headers are
// ignored; and a request whose body was not read (or could not be framed) closes the connection.
#pragma once

#include <functional>
#include <optional>

#include <httplib.h>

#include "server/openai_error.h"
#include "server/request_body.h"

namespace dpserve {

// A form body's Content-Type (with its boundary), moved here before routing: the routes read every
// body as JSON whatever its type, but the file upload parses multipart/form-data itself.
inline constexpr const char* kFormTypeHeader = "X-Dpserve-Form-Type";

// What a route may know about the connection its request came on, valid on the handler's thread
// while the request (and a streamed response) is served.
struct ConnectionState {
  int fd = -1;               // the client's socket, open at least until the response is written
  bool close_after = false;  // end the connection after this response
  // A large response was built (its JSON tree is freed by the time it is written): glibc keeps the
  // freed small blocks, so the connection loop hands them back to the system after the response.
  bool trim_after = false;
};

class ConnectionServer : public httplib::Server {
 public:
  // Returns the refusal for a request from its line and headers alone (401, 503, ...), or nullopt
  // to read its body and route it.
  using Gate = std::function<std::optional<ApiError>(const httplib::Request&)>;

  explicit ConnectionServer(BodyLimits limits);

  void set_gate(Gate gate) { gate_ = std::move(gate); }
  // Runs on the gate's refusals once their body is set (to give a route family its own error shape).
  using Shaper = std::function<void(const httplib::Request&, httplib::Response&)>;
  void set_refusal_shaper(Shaper f) { shaper_ = std::move(f); }
  // The connection of the request being served on this thread (null on other threads).
  static ConnectionState* current();

 private:
  bool process_and_close_socket(socket_t sock) override;

  BodyLimits limits_;
  Gate gate_;
  Shaper shaper_;
};

}  // namespace dpserve
