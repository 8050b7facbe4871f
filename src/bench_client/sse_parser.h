// Incremental server-sent-events parser: bytes arrive in arbitrary pieces (a network read may end
// mid-line or between CR and LF), complete events come out (WHATWG rules: data/event fields,
// comment lines, CR, LF or CRLF line ends).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace dpserve::bench {

struct SseEvent {
  std::string event;  // "" unless an `event:` field was given
  std::string data;   // the data lines joined by '\n'
};

class SseParser {
 public:
  using Handler = std::function<void(SseEvent&&)>;

  // Lines longer than this are an error (a broken server must not grow our memory without bound).
  explicit SseParser(size_t max_line_bytes = 16 << 20) : max_line_(max_line_bytes) {}

  void feed(std::string_view bytes, const Handler& on_event);
  // End of stream: a final event without the closing blank line is still delivered, since some
  // servers close the connection right after the last `data:` line.
  void finish(const Handler& on_event);

 private:
  void line(std::string_view l, const Handler& on_event);
  void dispatch(const Handler& on_event);

  size_t max_line_;
  std::string buf_;
  bool after_cr_ = false;  // the previous piece ended in CR: a leading LF belongs to that line end
  std::string event_, data_;
  bool has_data_ = false;
};

}  // namespace dpserve::bench
