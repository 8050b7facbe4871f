#include "server/request_registry.h"

namespace dpserve {

void RequestRegistry::add(uint64_t id, const std::string& rid) {
  std::lock_guard<std::mutex> lk(mu_);
  by_id_[id] = rid;
}

void RequestRegistry::remove(uint64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  by_id_.erase(id);
}

std::vector<uint64_t> RequestRegistry::find(const std::string& rid, bool all) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, r] : by_id_)
    if (all || r == rid) out.push_back(id);
  return out;
}

int64_t RequestRegistry::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return int64_t(by_id_.size());
}

}  // namespace dpserve
