#include "parallel/placement.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

namespace dpserve {

std::vector<std::string> gather_host_names(const Comm& world) {
  // Fixed-size blocks keep it one all-gather; longer names (rare: 64 is the POSIX limit) are cut.
  constexpr size_t kLen = 64;
  std::array<std::byte, kLen> mine{};
  char name[kLen + 1] = {};
  if (gethostname(name, kLen) != 0) std::strcpy(name, "?");
  std::memcpy(mine.data(), name, std::min(kLen, std::strlen(name)));
  std::vector<std::byte> all(kLen * size_t(world.size()));
  world.allgather(std::span<const std::byte>(mine), std::span<std::byte>(all));
  std::vector<std::string> out;
  for (int r = 0; r < world.size(); ++r) {
    const char* p = reinterpret_cast<const char*>(all.data() + kLen * size_t(r));
    out.emplace_back(p, strnlen(p, kLen));
  }
  return out;
}

std::string format_placement(const std::vector<std::string>& host_of_rank) {
  std::vector<std::string> hosts;
  for (const auto& h : host_of_rank)
    if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  std::string out;
  for (const auto& h : hosts) {
    std::string ranges;
    int n = 0;
    for (int r = 0; r < int(host_of_rank.size()); ++r) {
      if (host_of_rank[r] != h) continue;
      ++n;
      int e = r;
      while (e + 1 < int(host_of_rank.size()) && host_of_rank[e + 1] == h) ++e;
      ranges += (ranges.empty() ? "" : ", ") + (e > r ? fmt::format("{}-{}", r, e) : fmt::format("{}", r));
      n += e - r;
      r = e;
    }
    out += fmt::format("{}{}: {} {}", out.empty() ? "" : "; ", h, n == 1 ? "rank" : "ranks", ranges);
  }
  return out;
}

}  // namespace dpserve
