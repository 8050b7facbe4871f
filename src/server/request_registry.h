// The requests currently running on behalf of HTTP clients, by engine id and client rid, so that
// /abort_request can find them and the server can count what is in flight.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace dpserve {

class RequestRegistry {
 public:
  void add(uint64_t id, const std::string& rid);
  void remove(uint64_t id);
  // Engine ids of requests whose rid is `rid` (every request when `rid` is empty and `all`).
  std::vector<uint64_t> find(const std::string& rid, bool all = false) const;
  int64_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, std::string> by_id_;
};

}  // namespace dpserve
