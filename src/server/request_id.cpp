#include "server/request_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve {

std::string new_request_id(const char* prefix) {
  uint64_t r[2];
  size_t got = 0;
  while (got < sizeof r) {
    // The kernel's CSPRNG; it blocks only before the pool is first seeded at boot.
    const ssize_t n = getrandom(reinterpret_cast<char*>(r) + got, sizeof r - got, 0);
    if (n < 0 && errno == EINTR) continue;
    DP_CHECK(n > 0, "getrandom failed");
    got += size_t(n);
  }
  return fmt::format("{}-{:016x}{:016x}", prefix, r[0], r[1]);
}

std::string new_underscore_id(const char* prefix) {
  std::string id = new_request_id(prefix);
  id[std::char_traits<char>::length(prefix)] = '_';
  return id;
}

}  // namespace dpserve
