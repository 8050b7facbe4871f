#include "server/request_registry.h"

namespace dpserve {

void RequestRegistry::add(uint64_t id, const std::string& rid, const std::string& owner) {
  std::lock_guard<std::mutex> lk(mu_);
  by_id_[id] = Entry{rid, owner};
}

void RequestRegistry::remove(uint64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  by_id_.erase(id);
}

std::vector<uint64_t> RequestRegistry::find(const std::string& rid, const Caller& caller) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, e] : by_id_)
    if (e.rid == rid && (caller.admin || e.owner == caller.owner)) out.push_back(id);
  return out;
}

std::vector<uint64_t> RequestRegistry::all() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, e] : by_id_) out.push_back(id);
  return out;
}

int64_t RequestRegistry::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return int64_t(by_id_.size());
}

bool RequestRegistry::claim(const std::string& owner, const std::vector<std::string>& rids, std::string* taken) {
  std::lock_guard<std::mutex> lk(mu_);
  std::set<std::string> seen;
  for (const auto& r : rids) {
    if (claimed_.count({owner, r}) || !seen.insert(r).second) {
      if (taken) *taken = r;
      return false;
    }
  }
  for (const auto& r : rids) claimed_.insert({owner, r});
  return true;
}

void RequestRegistry::release(const std::string& owner, const std::vector<std::string>& rids) {
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& r : rids) claimed_.erase({owner, r});
}

}  // namespace dpserve
