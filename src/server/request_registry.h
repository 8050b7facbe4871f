// The requests running on behalf of HTTP clients: each choice by engine id, with the rid clients
// abort it by and the key of the caller who sent it, so /abort_request finds the caller's own
// requests; and the client-chosen rids that are live, so a second request cannot reuse one.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "server/auth.h"

namespace dpserve {

class RequestRegistry {
 public:
  void add(uint64_t id, const std::string& rid, const std::string& owner);
  void remove(uint64_t id);
  // Engine ids of the running choices with this rid that `caller` may abort: its own, or any for
  // the admin.
  std::vector<uint64_t> find(const std::string& rid, const Caller& caller) const;
  std::vector<uint64_t> all() const;
  int64_t size() const;

  // Reserves client-chosen rids for `owner` while a request runs. False, reserving nothing, when one
  // of them is live already (or repeats in `rids`); `taken` then names it.
  bool claim(const std::string& owner, const std::vector<std::string>& rids, std::string* taken);
  void release(const std::string& owner, const std::vector<std::string>& rids);

 private:
  struct Entry {
    std::string rid, owner;
  };
  mutable std::mutex mu_;
  std::map<uint64_t, Entry> by_id_;
  std::set<std::pair<std::string, std::string>> claimed_;  // (owner, rid)
};

}  // namespace dpserve
