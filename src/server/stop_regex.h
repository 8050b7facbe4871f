// SGLang's stop_regex: generation stops once the decoded output so far contains a match of one of
// the request's patterns (PCRE2, UTF-8). Compiled once when the request is parsed; shared by its choices.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dpserve {

class StopRegex {
 public:
  // Compiles every pattern; a bad one throws std::invalid_argument naming its index and PCRE2's message.
  explicit StopRegex(const std::vector<std::string>& patterns);
  ~StopRegex();
  StopRegex(const StopRegex&) = delete;
  StopRegex& operator=(const StopRegex&) = delete;

  // The first pattern (in the request's order, as SGLang checks them) that matches somewhere in
  // `text`, or nullopt. Text that is not valid UTF-8 (a character still split across tokens) is
  // searched too: invalid bytes match nothing.
  std::optional<std::string> search(std::string_view text) const;
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  std::vector<std::string> patterns_;
  std::vector<void*> codes_;  // pcre2_code_8*
};

}  // namespace dpserve
