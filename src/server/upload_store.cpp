#include "server/upload_store.h"

#include <chrono>
#include <set>

#include <fmt/format.h>

#include "server/md5.h"
#include "server/openai_error.h"

namespace dpserve {

namespace {

[[noreturn]] void invalid(const std::string& message, const std::string& param = "",
                          const std::string& code = "invalid_value") {
  throw ApiError(400, message, param, "invalid_request_error", code);
}

[[noreturn]] void store_full(FileStore& files, size_t wanted) {
  throw ApiError(400,
                 fmt::format("The file store has no room for {} more bytes: {} bytes kept or held for uploads of "
                             "--max-file-store-mb {} MiB; delete files first",
                             wanted, files.bytes(), files.max_bytes() >> 20),
                 "bytes", "invalid_request_error", "file_store_full");
}

}  // namespace

nlohmann::json UploadStore::Upload::object() const {
  return {{"id", id},
          {"object", "upload"},
          {"bytes", bytes},
          {"created_at", created_at},
          {"filename", filename},
          {"purpose", purpose},
          {"status", status},
          {"expires_at", expires_at},
          {"file", file ? file->object() : nlohmann::json(nullptr)}};
}

UploadStore::UploadStore(FileStore& files, std::function<int64_t()> now) : files_(files), now_(std::move(now)) {
  if (!now_)
    now_ = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
}

void UploadStore::end(std::map<std::string, Pending>::iterator it, const char* status) {
  files_.release(it->second.reserved);
  parts_ -= it->second.parts.size();
  it->second.upload.status = status;
  ended_.push_back(std::move(it->second.upload));
  // Remembered for its status only: holding the file (its bytes) here would keep them after the
  // file is deleted, outside the store's bound.
  ended_.back().file.reset();
  if (ended_.size() > kMaxEnded) ended_.pop_front();
  pending_.erase(it);
}

void UploadStore::drop_expired() {
  const int64_t now = now_();
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto next = std::next(it);
    if (it->second.upload.expires_at <= now && !it->second.completing) end(it, "expired");
    it = next;
  }
}

UploadStore::Pending& UploadStore::find_pending(const std::string& id, const std::string& owner) {
  drop_expired();
  auto it = pending_.find(id);
  if (it != pending_.end() && it->second.upload.owner == owner) {
    if (it->second.completing) invalid(fmt::format("Upload {} is being completed", id), "upload_id");
    return it->second;
  }
  for (const Upload& u : ended_)
    if (u.id == id && u.owner == owner)
      invalid(fmt::format("Upload {} is already {}", id, u.status), "upload_id", "upload_not_pending");
  throw ApiError(404, fmt::format("No such Upload object: {}", id), "upload_id", "invalid_request_error",
                 "upload_not_found");
}

UploadStore::Upload UploadStore::create(std::string id, const std::string& owner, std::string filename,
                                        std::string purpose, int64_t bytes, int64_t file_expires_after) {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  if (pending_.size() >= kMaxPending)
    invalid(fmt::format("The server holds {} pending uploads, its most; complete or cancel some first", kMaxPending),
            "", "too_many_uploads");
  if (!files_.reserve(size_t(bytes))) store_full(files_, size_t(bytes));
  Pending p;
  p.reserved = size_t(bytes);
  Upload& u = p.upload;
  u.id = std::move(id);
  u.owner = owner;
  u.filename = std::move(filename);
  u.purpose = std::move(purpose);
  u.bytes = bytes;
  u.created_at = now_();
  u.expires_at = u.created_at + kLifetimeSeconds;
  u.file_expires_after = file_expires_after;
  const Upload out = u;
  pending_.emplace(out.id, std::move(p));
  return out;
}

nlohmann::json UploadStore::add_part(const std::string& id, const std::string& owner, std::string part_id,
                                     std::string data) {
  std::lock_guard<std::mutex> lk(mu_);
  Pending& p = find_pending(id, owner);
  if (p.parts.size() >= kMaxParts)
    invalid(fmt::format("Upload {} has {} parts, the most one upload takes here", id, kMaxParts), "data");
  if (parts_ >= kMaxPendingParts)
    invalid(fmt::format("The server holds {} parts of pending uploads, its most; complete or cancel uploads first",
                        kMaxPendingParts),
            "data", "too_many_parts");
  const size_t n = data.size();
  if (p.received + n > p.reserved) {
    const size_t more = p.received + n - p.reserved;
    if (!files_.reserve(more)) store_full(files_, more);
    p.reserved += more;
  }
  p.received += n;
  ++parts_;
  p.parts.emplace(part_id, std::make_shared<const std::string>(std::move(data)));
  return {{"id", part_id}, {"object", "upload.part"}, {"created_at", now_()}, {"upload_id", id}};
}

UploadStore::Upload UploadStore::complete(const std::string& id, const std::string& owner,
                                          const std::vector<std::string>& part_ids,
                                          const std::optional<std::string>& md5, std::string file_id) {
  std::vector<std::shared_ptr<const std::string>> parts;
  Upload u;
  size_t reserved = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    Pending& p = find_pending(id, owner);
    std::set<std::string> seen;
    size_t total = 0;
    for (size_t i = 0; i < part_ids.size(); ++i) {
      auto it = p.parts.find(part_ids[i]);
      if (it == p.parts.end())
        invalid(fmt::format("No such part of upload {}: {}", id, part_ids[i]), fmt::format("part_ids[{}]", i));
      if (!seen.insert(part_ids[i]).second)
        invalid(fmt::format("Part {} is listed twice", part_ids[i]), fmt::format("part_ids[{}]", i));
      total += it->second->size();
      parts.push_back(it->second);
    }
    if (int64_t(total) != p.upload.bytes)
      invalid(
          fmt::format("The parts listed hold {} bytes; the upload was created with bytes {}", total, p.upload.bytes),
          "part_ids", "upload_size_mismatch");
    p.completing = true;
    u = p.upload;
    reserved = p.reserved;
  }
  // Assembled outside the lock: other uploads go on while a large file is copied and hashed.
  std::string content;
  content.reserve(size_t(u.bytes));
  for (const auto& part : parts) content += *part;
  parts.clear();
  std::optional<FileStore::File> file;
  std::string digest;
  if (md5) digest = md5_hex(content);
  if (!md5 || digest == *md5)
    file = files_.put(std::move(file_id), u.owner, u.filename, u.purpose, std::move(content), u.file_expires_after,
                      reserved);
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pending_.find(id);
  it->second.completing = false;
  if (md5 && digest != *md5)
    invalid(fmt::format("The parts' MD5 is {}, not the md5 given ({}); the upload stays pending", digest, *md5), "md5",
            "md5_mismatch");
  if (!file) store_full(files_, size_t(u.bytes));  // (the reservation covers it: not expected)
  it->second.reserved = 0;                         // the file holds those bytes now
  it->second.upload.file = file;
  u = it->second.upload;
  u.status = "completed";
  end(it, "completed");
  return u;
}

UploadStore::Upload UploadStore::cancel(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lk(mu_);
  find_pending(id, owner);
  Upload u = pending_.at(id).upload;
  u.status = "cancelled";
  end(pending_.find(id), "cancelled");
  return u;
}

size_t UploadStore::pending() {
  std::lock_guard<std::mutex> lk(mu_);
  drop_expired();
  return pending_.size();
}

}  // namespace dpserve
