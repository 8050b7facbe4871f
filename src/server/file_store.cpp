#include "server/file_store.h"

#include <algorithm>
#include <chrono>

namespace dpserve {

nlohmann::json FileStore::File::object() const {
  return {{"id", id},
          {"object", "file"},
          {"bytes", content ? content->size() : 0},
          {"created_at", created_at},
          {"filename", filename},
          {"purpose", purpose},
          {"status", "processed"},
          {"expires_at", nullptr},
          {"status_details", nullptr}};
}

std::optional<FileStore::File> FileStore::put(std::string id, const std::string& owner, std::string filename,
                                              std::string purpose, std::string content) {
  File f;
  f.id = std::move(id);
  f.owner = owner;
  f.filename = std::move(filename);
  f.purpose = std::move(purpose);
  f.created_at =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const size_t n = content.size();
  f.content = std::make_shared<const std::string>(std::move(content));
  std::lock_guard<std::mutex> lk(mu_);
  if (bytes_ + n > max_bytes_) return std::nullopt;
  bytes_ += n;
  order_.push_back(f.id);
  files_[f.id] = f;
  return f;
}

std::optional<FileStore::File> FileStore::get(const std::string& id, const std::string& owner) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = files_.find(id);
  if (it == files_.end() || it->second.owner != owner) return std::nullopt;
  return it->second;
}

std::vector<FileStore::File> FileStore::list(const std::string& owner, const std::string& purpose) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<File> out;
  for (const auto& id : order_) {
    const File& f = files_.at(id);
    if (f.owner == owner && (purpose.empty() || f.purpose == purpose)) out.push_back(f);
  }
  return out;
}

bool FileStore::erase(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = files_.find(id);
  if (it == files_.end() || it->second.owner != owner) return false;
  bytes_ -= it->second.content->size();
  files_.erase(it);
  order_.erase(std::find(order_.begin(), order_.end(), id));
  return true;
}

size_t FileStore::bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return bytes_;
}

}  // namespace dpserve
