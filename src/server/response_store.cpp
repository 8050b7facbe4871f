#include "server/response_store.h"

namespace dpserve {

namespace {

// What an entry costs: its JSON text, which is about what nlohmann's tree holds (within a small factor).
size_t cost(const ResponseStore::Entry& e) {
  return e.owner.size() + e.response.dump().size() + e.conversation.dump().size();
}

}  // namespace

bool ResponseStore::put(const std::string& id, Entry e) {
  const size_t b = cost(e);
  std::lock_guard<std::mutex> lock(mu_);
  if (max_count_ == 0 || b > max_bytes_) return false;
  if (auto it = slots_.find(id); it != slots_.end()) {
    bytes_ -= it->second.bytes;
    order_.erase(it->second.order);
    slots_.erase(it);
  }
  while (!order_.empty() && (slots_.size() + 1 > max_count_ || bytes_ + b > max_bytes_)) {
    auto oldest = slots_.find(order_.front());
    bytes_ -= oldest->second.bytes;
    slots_.erase(oldest);
    order_.pop_front();
  }
  order_.push_back(id);
  slots_.emplace(id, Slot{std::move(e), b, std::prev(order_.end())});
  bytes_ += b;
  return true;
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id, const std::string& owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end() || it->second.entry.owner != owner) return std::nullopt;
  return it->second.entry;
}

bool ResponseStore::erase(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end() || it->second.entry.owner != owner) return false;
  bytes_ -= it->second.bytes;
  order_.erase(it->second.order);
  slots_.erase(it);
  return true;
}

size_t ResponseStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size();
}

size_t ResponseStore::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace dpserve
