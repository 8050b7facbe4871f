#include "server/response_store.h"

#include <algorithm>

namespace dpserve {

bool ResponseStore::put(const std::string& id, const Entry& e) { return keep(id, e, false); }

bool ResponseStore::replace(const std::string& id, const Entry& e) { return keep(id, e, true); }

bool ResponseStore::keep(const std::string& id, const Entry& e, bool only_present) {
  Slot s{e.owner, e.response.dump(), e.conversation.dump(), e.input_count, 0, {}};
  s.bytes = id.size() + s.owner.size() + s.response.size() + s.conversation.size();
  std::lock_guard<std::mutex> lock(mu_);
  auto present = slots_.find(id);
  if (only_present && (present == slots_.end() || present->second.owner != e.owner)) return false;
  if (max_count_ == 0 || s.bytes > max_bytes_) return false;
  s.seq = present != slots_.end() ? present->second.seq : next_seq_++;
  if (present != slots_.end()) drop(present);
  while (!slots_.empty() && (slots_.size() + 1 > max_count_ || bytes_ + s.bytes > max_bytes_)) {
    auto o = victim(slots_.size() + 1 > max_count_);
    drop(slots_.find(o->second.order.front()));
  }
  Owner& o = owners_[s.owner];
  o.order.push_back(id);
  o.bytes += s.bytes;
  s.order = std::prev(o.order.end());
  bytes_ += s.bytes;
  slots_.emplace(id, std::move(s));
  return true;
}

void ResponseStore::drop(std::unordered_map<std::string, Slot>::iterator it) {
  auto o = owners_.find(it->second.owner);
  o->second.order.erase(it->second.order);
  o->second.bytes -= it->second.bytes;
  if (o->second.order.empty()) owners_.erase(o);
  bytes_ -= it->second.bytes;
  slots_.erase(it);
}

std::map<std::string, ResponseStore::Owner>::iterator ResponseStore::victim(bool by_count) {
  auto best = owners_.begin();
  for (auto it = owners_.begin(); it != owners_.end(); ++it) {
    const bool more = by_count ? it->second.order.size() > best->second.order.size()
                               : it->second.bytes > best->second.bytes;
    if (more) best = it;
  }
  return best;
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id, const std::string& owner,
                                                       bool with_conversation) const {
  std::string response, conversation;
  size_t input_count = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(id);
    if (it == slots_.end() || it->second.owner != owner) return std::nullopt;
    response = it->second.response;
    if (with_conversation) conversation = it->second.conversation;
    input_count = it->second.input_count;
  }
  return Entry{owner, nlohmann::json::parse(response),
               with_conversation ? nlohmann::ordered_json::parse(conversation) : nlohmann::ordered_json::array(),
               input_count};
}

bool ResponseStore::erase(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end() || it->second.owner != owner) return false;
  drop(it);
  return true;
}

ResponseStore::Update ResponseStore::update(const std::string& id, const std::string& owner,
                                            const std::function<void(Entry&)>& fn) {
  std::lock_guard<std::mutex> one(update_mu_);
  std::optional<Entry> e = get(id, owner);
  if (!e) return Update::kMissing;
  fn(*e);
  if (keep(id, *e, true)) return Update::kDone;
  return get(id, owner) ? Update::kTooBig : Update::kMissing;
}

std::vector<std::string> ResponseStore::ids(const std::string& owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto o = owners_.find(owner);
  if (o == owners_.end()) return {};
  std::vector<std::pair<uint64_t, std::string>> kept;
  for (const std::string& id : o->second.order) kept.emplace_back(slots_.at(id).seq, id);
  std::sort(kept.begin(), kept.end());
  std::vector<std::string> out;
  for (auto& [seq, id] : kept) out.push_back(std::move(id));
  return out;
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
