// HTTP request body framing (src/server/request_body.h): the first line of the input is the framing
// ("chunked", or a Content-Length value as a client sent it), the rest is what the client sends,
// handed over in small reads. The reader must end with a body or a 4xx/5xx status, never read past
// what a well-formed message holds, and keep every body within the size limit.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include <httplib.h>

#include "fuzz_util.h"
#include "server/request_body.h"

namespace {

// The client's bytes, a few at a time (as a socket delivers them); end of input is end of file.
class BytesStream : public httplib::Stream {
 public:
  explicit BytesStream(std::string data) : data_(std::move(data)) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min({size, data_.size() - at_, size_t(1 + at_ % 7)});
    std::copy_n(data_.data() + at_, n, ptr);
    at_ += n;
    return ssize_t(n);
  }
  ssize_t write(const char*, size_t size) override { return ssize_t(size); }
  void get_remote_ip_and_port(std::string&, int&) const override {}
  void get_local_ip_and_port(std::string&, int&) const override {}
  socket_t socket() const override { return 0; }
  size_t consumed() const { return at_; }

 private:
  std::string data_;
  size_t at_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  if (nl == std::string::npos) return 0;
  const std::string framing = in.substr(0, nl);
  const std::string rest = in.substr(nl + 1);
  httplib::Request req;
  if (framing == "chunked")
    req.set_header("Transfer-Encoding", "chunked");
  else
    req.set_header("Content-Length", framing);
  dpserve::BodyLimits limits;
  limits.max_bytes = 4096;
  BytesStream strm(rest);
  std::string body;
  const dpserve::BodyRead r = dpserve::read_request_body(strm, req, limits, body, nullptr);
  FUZZ_EXPECT(r.status == 0 || r.status == 400 || r.status == 413);
  FUZZ_EXPECT(r.status == 0 || !r.message.empty());
  FUZZ_EXPECT(strm.consumed() <= rest.size());
  if (r.status == 0) {
    FUZZ_EXPECT(body.size() <= limits.max_bytes);
    if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
      // cpp-httplib refuses a header value holding CR or LF: then no body was declared.
      FUZZ_EXPECT(body.empty() && strm.consumed() == 0);
    } else if (framing != "chunked") {
      // A Content-Length body is exactly that many bytes, taken as sent, and nothing after them.
      const std::string declared = req.get_header_value("Content-Length");  // as cpp-httplib hands it over
      FUZZ_EXPECT(std::to_string(body.size()) == declared || (declared.size() > 1 && declared[0] == '0'));
      FUZZ_EXPECT(rest.compare(0, body.size(), body) == 0);
      FUZZ_EXPECT(strm.consumed() == body.size());
    } else {
      // A chunked body is never longer than the bytes it came in.
      FUZZ_EXPECT(body.size() < rest.size());
    }
  }
  return 0;
}
