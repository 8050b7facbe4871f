#include "server/batch_store.h"

#include <algorithm>

namespace dpserve {

bool batch_finished(const std::string& status) {
  return status == "completed" || status == "failed" || status == "expired" || status == "cancelled";
}

bool batch_object_ended(const nlohmann::json& object) {
  return batch_finished(object.value("status", std::string())) ||
         object.value("processing_status", std::string()) == "ended";
}

std::shared_ptr<BatchStore::Batch> BatchStore::add(const std::string& owner, nlohmann::json object) {
  auto b = std::make_shared<Batch>();
  b->id = object["id"].get<std::string>();
  b->owner = owner;
  b->object = std::move(object);
  std::lock_guard<std::mutex> lk(mu_);
  // Beyond the count, the oldest finished batch goes (running ones are never dropped).
  for (auto it = order_.begin(); batches_.size() >= max_count_ && it != order_.end();) {
    auto& old = batches_.at(*it);
    if (batch_object_ended(old->snapshot())) {
      batches_.erase(*it);
      it = order_.erase(it);
    } else {
      ++it;
    }
  }
  batches_[b->id] = b;
  order_.push_back(b->id);
  return b;
}

std::shared_ptr<BatchStore::Batch> BatchStore::get(const std::string& id, const std::string& owner) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = batches_.find(id);
  if (it == batches_.end() || it->second->owner != owner) return nullptr;
  return it->second;
}

std::vector<std::shared_ptr<BatchStore::Batch>> BatchStore::list(const std::string& owner) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::shared_ptr<Batch>> out;
  for (const auto& id : order_)
    if (const auto& b = batches_.at(id); b->owner == owner) out.push_back(b);
  return out;
}

void BatchStore::erase(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  batches_.erase(id);
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
}

}  // namespace dpserve
