#include "server/request_body.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace dpserve {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxLine = 4096;         // a chunk-size line or one trailer field
constexpr size_t kMaxTrailerBytes = 64 << 10;

BodyRead fail(int status, std::string message, std::string code = "") {
  return BodyRead{status, std::move(message), std::move(code)};
}

class Reader {
 public:
  Reader(httplib::Stream& in, const BodyLimits& limits, const std::function<bool()>& stop)
      : in_(in), limits_(limits), stop_(stop), start_(Clock::now()) {}

  // Up to `n` bytes; sets `result` and returns 0 when reading must end.
  size_t read(char* p, size_t n, BodyRead& result) {
    if (stop_ && stop_()) {
      result = fail(503, "The server is shutting down", "server_draining");
      return 0;
    }
    if (limits_.deadline.count() > 0 && Clock::now() - start_ > limits_.deadline) {
      result = late();
      return 0;
    }
    const ssize_t got = in_.read(p, n);
    if (got <= 0) {
      // Silent past --http-read-timeout, hung up, or failed.
      result = fail(400, "The request body could not be read completely");
      return 0;
    }
    if (limits_.deadline.count() > 0 && Clock::now() - start_ > limits_.deadline) {
      result = late();
      return 0;
    }
    return size_t(got);
  }

  // Appends exactly `n` bytes to `out`, growing it as they arrive (a declared size is not trusted
  // with memory before the bytes are there).
  bool append(std::string& out, size_t n, BodyRead& result) {
    char buf[64 << 10];
    while (n > 0) {
      const size_t got = read(buf, std::min(n, sizeof buf), result);
      if (got == 0) return false;
      out.append(buf, got);
      n -= got;
    }
    return true;
  }

  bool read_exact(char* p, size_t n, BodyRead& result) {
    while (n > 0) {
      const size_t got = read(p, n, result);
      if (got == 0) return false;
      p += got;
      n -= got;
    }
    return true;
  }

  // One line without its CRLF (a bare LF is accepted too).
  bool read_line(std::string& line, BodyRead& result) {
    line.clear();
    for (;;) {
      char c;
      if (!read_exact(&c, 1, result)) return false;
      if (c == '\n') break;
      if (line.size() >= kMaxLine) {
        result = fail(400, "A chunk-size line or trailer field of the request body is too long");
        return false;
      }
      line.push_back(c);
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

 private:
  BodyRead late() const {
    if (limits_.cut_off) limits_.cut_off->fetch_add(1);
    return fail(408,
                fmt::format("The request body took longer than {} s to arrive (--http-request-timeout)",
                            double(limits_.deadline.count()) / 1000),
                "request_timeout");
  }

  httplib::Stream& in_;
  const BodyLimits& limits_;
  const std::function<bool()>& stop_;
  Clock::time_point start_;
};

BodyRead too_large() {
  return fail(413, "The request body is larger than the server's limit (--max-body-bytes)", "body_too_large");
}

// RFC 9110 8.6: Content-Length = 1*DIGIT. "-5", "+5", "5 5" and hex are not lengths.
bool parse_length(const std::string& s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + uint64_t(c - '0');
  }
  return true;
}

BodyRead read_chunked(Reader& r, const BodyLimits& limits, std::string& body) {
  BodyRead result;
  std::string line;
  for (;;) {
    if (!r.read_line(line, result)) return result;
    const std::string size_text = line.substr(0, line.find(';'));  // chunk extensions are ignored
    uint64_t size = 0;
    size_t digits = 0;
    for (char c : size_text) {
      if (c == ' ' || c == '\t') continue;  // BWS before an extension
      const int v = std::isdigit(uint8_t(c)) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                       : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (v < 0 || ++digits > 15) return fail(400, "The request body's chunk size is not a hexadecimal number");
      size = size * 16 + uint64_t(v);
    }
    if (digits == 0) return fail(400, "The request body's chunk size is not a hexadecimal number");
    if (size == 0) break;
    if (body.size() + size > limits.max_bytes) return too_large();
    if (!r.append(body, size_t(size), result)) return result;
    if (!r.read_line(line, result)) return result;
    if (!line.empty()) return fail(400, "A chunk of the request body is longer than its size says");
  }
  // Trailer fields, then the empty line that ends the message; their content is not used.
  size_t trailer_bytes = 0;
  for (;;) {
    if (!r.read_line(line, result)) return result;
    if (line.empty()) return result;
    trailer_bytes += line.size();
    if (trailer_bytes > kMaxTrailerBytes) return fail(400, "The request body's trailer fields are too large");
  }
}

}  // namespace

BodyRead read_request_body(httplib::Stream& in, const httplib::Request& req, const BodyLimits& limits,
                           std::string& body, const std::function<bool()>& stop) {
  body.clear();
  const bool has_te = req.has_header("Transfer-Encoding");
  const size_t cl_count = req.get_header_value_count("Content-Length");
  Reader r(in, limits, stop);
  if (has_te) {
    // Both framings at once is how requests are smuggled past proxies (RFC 9112 6.1): refuse.
    if (cl_count > 0) return fail(400, "The request has both Transfer-Encoding and Content-Length");
    std::string te = req.get_header_value("Transfer-Encoding");
    std::transform(te.begin(), te.end(), te.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (req.get_header_value_count("Transfer-Encoding") != 1 || te != "chunked")
      return fail(400, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)", te));
    return read_chunked(r, limits, body);
  }
  if (cl_count == 0) return {};
  uint64_t len = 0;
  for (size_t i = 0; i < cl_count; ++i) {
    uint64_t v = 0;
    const std::string text = req.get_header_value("Content-Length", i);
    if (!parse_length(text, v))
      return fail(400, fmt::format("Content-Length must be a non-negative decimal integer, got '{}'", text));
    if (i > 0 && v != len) return fail(400, "The request has Content-Length headers that disagree");
    len = v;
  }
  if (len > limits.max_bytes) return too_large();
  // Reserved, not touched: pages become resident only as the bytes arrive.
  body.reserve(size_t(len));
  BodyRead result;
  r.append(body, size_t(len), result);
  return result;
}

}  // namespace dpserve
