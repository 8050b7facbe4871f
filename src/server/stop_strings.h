// Stop strings over streamed text: text is released only once it can no longer be the start of a
// stop string, so a stop split across tokens is still found and never reaches the client.
#pragma once

#include <string>
#include <vector>

namespace dpserve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `piece` and returns the text now safe to emit. After a match, `matched()` is true,
  // the returned text ends just before the stop string, and later calls return "".
  std::string feed(const std::string& piece);
  // Releases the held-back tail (the stream ended without completing a stop string).
  std::string flush();

  bool matched() const { return matched_; }
  const std::string& matched_stop() const { return matched_stop_; }
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
  std::string matched_stop_;
};

}  // namespace dpserve
