// Invariant checks and the error type for bad input.
//
// DP_CHECK guards internal invariants (a bug if it fires); dpserve::Error is
// thrown for bad input (files, flags, requests) and carries a message meant
// for the user.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace dpserve {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace dpserve

#define DP_CHECK(cond, ...)                                                                 \
  do {                                                                                      \
    if (!(cond)) ::dpserve::check_failed(#cond, __FILE__, __LINE__, fmt::format("" __VA_ARGS__)); \
  } while (0)
