#include "bench_client/sse_parser.h"

#include "core/check.h"

namespace dpserve::bench {

void SseParser::feed(std::string_view bytes, const Handler& on_event) {
  size_t i = 0;
  if (after_cr_ && !bytes.empty() && bytes[0] == '\n') i = 1;
  after_cr_ = false;
  while (i < bytes.size()) {
    size_t j = bytes.find_first_of("\r\n", i);
    if (j == std::string_view::npos) {
      buf_.append(bytes.substr(i));
      if (buf_.size() > max_line_) fail("server-sent event line longer than {} bytes", max_line_);
      return;
    }
    buf_.append(bytes.substr(i, j - i));
    if (buf_.size() > max_line_) fail("server-sent event line longer than {} bytes", max_line_);
    std::string l;
    l.swap(buf_);
    line(l, on_event);
    if (bytes[j] == '\r') {
      if (j + 1 == bytes.size()) {
        after_cr_ = true;
        return;
      }
      if (bytes[j + 1] == '\n') ++j;
    }
    i = j + 1;
  }
}

void SseParser::finish(const Handler& on_event) {
  if (!buf_.empty()) {
    std::string l;
    l.swap(buf_);
    line(l, on_event);
  }
  dispatch(on_event);
  after_cr_ = false;
}

void SseParser::line(std::string_view l, const Handler& on_event) {
  if (l.empty()) {
    dispatch(on_event);
    return;
  }
  if (l[0] == ':') return;  // comment / keep-alive
  std::string_view field = l, value;
  if (size_t c = l.find(':'); c != std::string_view::npos) {
    field = l.substr(0, c);
    value = l.substr(c + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  } else if (field == "error") {
    // llama-server reports failures mid-stream as `error: {json}` lines instead of an event type.
    event_ = "error";
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  // id / retry and unknown fields do not matter to a benchmark client.
}

void SseParser::dispatch(const Handler& on_event) {
  if (has_data_) {
    SseEvent e{std::move(event_), std::move(data_)};
    on_event(std::move(e));
  }
  event_.clear();
  data_.clear();
  has_data_ = false;
}

}  // namespace dpserve::bench
