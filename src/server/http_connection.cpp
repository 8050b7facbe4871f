#include "server/http_connection.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <utility>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "server/request_id.h"

namespace dpserve {

namespace {

using Clock = std::chrono::steady_clock;

thread_local ConnectionState* t_current = nullptr;

constexpr std::chrono::seconds kLinger{2};
constexpr size_t kBigBody = 1 << 20;

int poll_for(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, int(timeout.count()));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

void address_of(bool local, int fd, std::string& ip, int& port) {
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  const int r = local ? getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len)
                      : getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  if (r != 0) return;
  if (sa.ss_family == AF_INET)
    port = ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
  else if (sa.ss_family == AF_INET6)
    port = ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port);
  else
    return;
  char host[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&sa), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0) ip = host;
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

// RFC 9110 5.1 / 5.5 and RFC 9112 3.2, 5.1: what the request line and headers must be before the
// request is framed at all. A field name is a token (whitespace before the colon is a 400: a
// proxy and we could otherwise frame the body differently, the smuggling that "Content-Length :"
// allows); a value holds no control characters but HTAB (NUL, bare CR or LF); an HTTP/1.1 request
// names its Host; an Expect other than 100-continue cannot be met (417); a body in a content
// coding (gzip ...) is not read as if it were plain (415). Any of these also closes
// the connection: nothing after it on the stream can be trusted to start a request.
std::optional<ApiError> header_violation(const httplib::Request& req) {
  auto tchar = [](unsigned char c) {
    return std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
  };
  for (const auto& [name, value] : req.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), [&](char c) { return tchar((unsigned char)c); }))
      return ApiError(400, fmt::format("Invalid header field name '{}': a name is a token, with no whitespace "
                                       "before the colon",
                                       name.substr(0, 64)),
                      "", "", "invalid_header");
    for (unsigned char c : value)
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return ApiError(400, fmt::format("Header '{}' holds a control character (0x{:02x})", name.substr(0, 64), c),
                        "", "", "invalid_header");
  }
  if (req.version == "HTTP/1.1" && !req.has_header("Host"))
    return ApiError(400, "An HTTP/1.1 request must have a Host header", "", "", "invalid_header");
  if (req.has_header("Content-Encoding")) {
    const std::string ce = lowercase(req.get_header_value("Content-Encoding"));
    if (ce != "identity" || req.get_header_value_count("Content-Encoding") > 1)
      return ApiError(415, fmt::format("Content-Encoding '{}' is not supported: send the body uncompressed",
                                       ce.substr(0, 64)),
                      "", "", "unsupported_content_encoding");
  }
  if (req.has_header("Expect")) {
    const std::string e = lowercase(req.get_header_value("Expect"));
    if (e != "100-continue" || req.get_header_value_count("Expect") > 1)
      return ApiError(417, fmt::format("Expect: '{}' cannot be met (only 100-continue is)", e.substr(0, 64)), "", "",
                      "expectation_failed");
  }
  return std::nullopt;
}

// One read buffer for the life of the connection: bytes that arrived ahead of the request being
// read (a pipelined next request) stay here for the next one.
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(int fd, std::chrono::milliseconds read_timeout, std::chrono::milliseconds write_timeout)
      : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout), buf_(kBufferSize, '\0') {}

  bool is_readable() const override {
    return off_ < len_ || poll_for(fd_, POLLIN, read_timeout_) > 0;
  }

  bool is_writable() const override {
    if (poll_for(fd_, POLLOUT, write_timeout_) <= 0) return false;
    // A peer that has closed reads as end of file; unread request bytes do not count as closed.
    if (poll_for(fd_, POLLIN, std::chrono::milliseconds(0)) <= 0) return true;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (off_ < len_) {
      const size_t n = std::min(size, len_ - off_);
      std::memcpy(ptr, buf_.data() + off_, n);
      off_ += n;
      return ssize_t(n);
    }
    if (poll_for(fd_, POLLIN, read_timeout_) <= 0) return -1;
    if (size >= kBufferSize) return recv_some(ptr, size);
    const ssize_t got = recv_some(buf_.data(), kBufferSize);
    if (got <= 0) return got;
    len_ = size_t(got);
    off_ = 0;
    return read(ptr, size);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    for (;;) {
      const ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(false, fd_, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(true, fd_, ip, port); }
  socket_t socket() const override { return fd_; }

  bool has_buffered() const { return off_ < len_; }

 private:
  static constexpr size_t kBufferSize = 16 << 10;

  ssize_t recv_some(char* p, size_t n) {
    for (;;) {
      const ssize_t got = ::recv(fd_, p, n, 0);
      if (got < 0 && errno == EINTR) continue;
      return got;
    }
  }

  int fd_;
  std::chrono::milliseconds read_timeout_, write_timeout_;
  std::string buf_;
  size_t off_ = 0, len_ = 0;
};

std::chrono::milliseconds ms(time_t sec, time_t usec) { return std::chrono::milliseconds(sec * 1000 + usec / 1000); }

// Per request: what the connection loop learnt before routing, for the pre-routing handler to answer.
struct Pending {
  bool setup_ran = false;
  std::optional<ApiError> refusal;
};
thread_local Pending t_pending;

}  // namespace

ConnectionState* ConnectionServer::current() { return t_current; }

ConnectionServer::ConnectionServer(BodyLimits limits) : limits_(limits) {
  // A refusal from the gate, or a body that could not be read, is answered before any route runs.
  set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!t_pending.refusal) return HandlerResponse::Unhandled;
    const ApiError& e = *t_pending.refusal;
    res.status = e.status();
    if (e.status() == 429) res.set_header("Retry-After", "1");
    res.set_content(e.body().dump(), "application/json");
    if (shaper_) shaper_(req, res);
    return HandlerResponse::Handled;
  });
  // Runs as every response is written, including those cpp-httplib makes itself before our setup
  // (a bad request line, 414, a malformed Range): when the body was not consumed, or is in doubt,
  // the connection ends after this response instead of reading body bytes as the next request.
  set_post_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    // Every answer names its request, as OpenAI's do (the SDKs expose it as _request_id / requestID): the
    // client's own X-Request-Id when it is a plain token, so its logs and ours meet; else a fresh one.
    if (!res.has_header("X-Request-Id")) {
      const std::string& mine = req.get_header_value("X-Request-Id");
      const bool plain = !mine.empty() && mine.size() <= 128 && std::all_of(mine.begin(), mine.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.' || ch == ':';
      });
      res.set_header("X-Request-Id", plain ? mine : new_request_id("req"));
    }
    ConnectionState* c = t_current;
    if (!c) return;
    if (!t_pending.setup_ran) c->close_after = true;
    if (c->close_after) {
      res.headers.erase("Keep-Alive");
      res.set_header("Connection", "close");
    }
  });
}

bool ConnectionServer::process_and_close_socket(socket_t sock) {
  ConnectionState state;
  state.fd = sock;
  t_current = &state;
  ConnectionStream strm(sock, ms(read_timeout_sec_, read_timeout_usec_), ms(write_timeout_sec_, write_timeout_usec_));
  auto stopping = [this] { return svr_sock_ == INVALID_SOCKET; };
  // Waits for the next request, checking every 100 ms whether the server stops.
  auto next_request = [&] {
    if (strm.has_buffered()) return true;
    const auto until = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
    while (!stopping()) {
      const int r = poll_for(sock, POLLIN, std::chrono::milliseconds(100));
      if (r != 0) return r > 0;
      if (Clock::now() >= until) return false;
    }
    return false;
  };
  bool ret = false;
  for (size_t left = keep_alive_max_count_; left > 0 && !stopping() && next_request(); --left) {
    t_pending = Pending{};
    bool closed = false;
    bool big_body = false;
    ret = process_request(strm, left == 1, closed, [&](httplib::Request& req) {
      t_pending.setup_ran = true;
      req.ranges.clear();  // Range is for static files; an API answer is always whole
      t_pending.refusal = header_violation(req);
      if (!t_pending.refusal && gate_) t_pending.refusal = gate_(req);
      if (t_pending.refusal) {
        state.close_after = true;  // its body is never read
      } else {
        if (req.get_header_value("Expect") == "100-continue" &&
            (req.has_header("Content-Length") || req.has_header("Transfer-Encoding"))) {
          static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
          strm.write(kContinue, sizeof kContinue - 1);
        }
        BodyRead r = read_request_body(strm, req, limits_, req.body, stopping);
        big_body = req.body.capacity() >= kBigBody;
        if (r.status != 0) {
          state.close_after = true;  // the rest of the body is unread or its framing is broken
          if (r.status == 408)
            spdlog::warn("client {} {}: request body not in after {} ms (--http-request-timeout): connection closed",
                         req.remote_addr, req.remote_port, limits_.deadline.count());
          t_pending.refusal = ApiError(r.status, r.message, "", "", r.code);
        }
      }
      // The API reads every body as JSON whatever its Content-Type (as SGLang's FastAPI routes do):
      // `curl -d` and Python's urllib send JSON as application/x-www-form-urlencoded. cpp-httplib
      // would parse such a body as a form itself (refusing one over 8 KiB with a 413) and a
      // multipart/form-data one as parts (a bare 400), so it does not get to see those types.
      // The file upload route (/v1/files) parses its multipart body itself: it reads the type, with
      // its boundary, from kFormTypeHeader (a client's own header of that name is dropped).
      const std::string original = req.get_header_value("Content-Type");
      const std::string type = lowercase(original);
      req.headers.erase(kFormTypeHeader);
      if (type.rfind("application/x-www-form-urlencoded", 0) == 0 || type.rfind("multipart/form-data", 0) == 0) {
        req.headers.erase("Content-Type");
        req.set_header(kFormTypeHeader, original);
      }
      // cpp-httplib must read no body of its own: the body, if any, is in req.body already.
      req.headers.erase("Expect");
      req.headers.erase("Transfer-Encoding");
      req.headers.erase("Content-Length");
      req.set_header("Content-Length", "0");
    });
    // The body and what was parsed from it are freed by now, on the error paths too; glibc keeps
    // freed small blocks in its arenas, so after a big body give them back to the system.
    if (big_body || std::exchange(state.trim_after, false)) malloc_trim(0);
    if (!ret || closed || state.close_after) break;
  }
  t_current = nullptr;
  if (state.close_after) {
    // The client may still be sending the body we refused: closing with unread bytes would reset
    // the connection and could destroy our answer before it reads it. Stop writing, take in (and
    // drop) what it still sends for a short while, then close (a "lingering close").
    ::shutdown(sock, SHUT_WR);
    const auto until = Clock::now() + kLinger;
    char buf[64 << 10];
    while (!stopping() && Clock::now() < until && poll_for(sock, POLLIN, std::chrono::milliseconds(100)) >= 0) {
      const ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
    }
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace dpserve
