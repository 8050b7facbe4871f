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
          {"expires_at", expires_at > 0 ? nlohmann::json(expires_at) : nlohmann::json(nullptr)},
          {"status_details", nullptr}};
}

FileStore::FileStore(size_t max_bytes, std::function<int64_t()> now) : max_bytes_(max_bytes), now_(std::move(now)) {
  if (!now_)
    now_ = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
}

void FileStore::drop_expired() {
  const int64_t now = now_();
  if (next_expiry_ == 0 || next_expiry_ > now) return;
  next_expiry_ = 0;
  for (auto it = order_.begin(); it != order_.end();) {
    const File& f = files_.at(*it);
    if (f.expires_at > 0 && f.expires_at <= now) {
      bytes_ -= f.content->size();
      files_.erase(*it);
      it = order_.erase(it);
      continue;
    }
    if (f.expires_at > 0 && (next_expiry_ == 0 || f.expires_at < next_expiry_)) next_expiry_ = f.expires_at;
    ++it;
  }
}

std::optional<FileStore::File> FileStore::put(std::string id, const std::string& owner, std::string filename,
                                              std::string purpose, std::string content, int64_t expires_after,
                                              size_t reserved) {
  File f;
  f.id = std::move(id);
  f.owner = owner;
  f.filename = std::move(filename);
  f.purpose = std::move(purpose);
  f.created_at = now_();
  f.expires_at = expires_after > 0 ? f.created_at + expires_after : 0;
  const size_t n = content.size();
  f.content = std::make_shared<const std::string>(std::move(content));
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  if (bytes_ - reserved + n > max_bytes_) return std::nullopt;
  bytes_ = bytes_ - reserved + n;
  if (f.expires_at > 0 && (next_expiry_ == 0 || f.expires_at < next_expiry_)) next_expiry_ = f.expires_at;
  order_.push_back(f.id);
  files_[f.id] = f;
  return f;
}

std::optional<FileStore::File> FileStore::get(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  auto it = files_.find(id);
  if (it == files_.end() || it->second.owner != owner) return std::nullopt;
  return it->second;
}

std::vector<FileStore::File> FileStore::list(const std::string& owner, const std::string& purpose) {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  std::vector<File> out;
  for (const auto& id : order_) {
    const File& f = files_.at(id);
    if (f.owner == owner && (purpose.empty() || f.purpose == purpose)) out.push_back(f);
  }
  return out;
}

bool FileStore::erase(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  auto it = files_.find(id);
  if (it == files_.end() || it->second.owner != owner) return false;
  bytes_ -= it->second.content->size();
  files_.erase(it);
  order_.erase(std::find(order_.begin(), order_.end(), id));
  return true;
}

bool FileStore::reserve(size_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  if (bytes_ + n > max_bytes_) return false;
  bytes_ += n;
  return true;
}

void FileStore::release(size_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  bytes_ -= n;
}

size_t FileStore::bytes() {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  return bytes_;
}

}  // namespace dpserve
