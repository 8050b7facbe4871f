// OpenAI's Uploads API (/v1/uploads): a file sent in parts and assembled into the FileStore when the
// client completes it. A pending upload holds its bytes in the file store's bound from its creation
// (the declared size, more as parts outgrow it), so parts can never outgrow the store; what it holds
// is freed when it is completed (the file takes its place), cancelled or expired (an hour after its
// creation, as OpenAI's). Each upload belongs to the API key that made it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "server/file_store.h"

namespace dpserve {

class UploadStore {
 public:
  static constexpr int64_t kLifetimeSeconds = 3600;
  static constexpr size_t kMaxParts = 1000;    // per upload (OpenAI's 8 GB in 64 MB parts is 128)
  static constexpr size_t kMaxPending = 1000;  // pending uploads, all keys together
  // Parts of all pending uploads together: their bytes are in the file store's bound, this bounds
  // what a part costs beside its bytes (a thousand uploads of a thousand 1-byte parts would not be).
  static constexpr size_t kMaxPendingParts = 10000;
  static constexpr size_t kMaxEnded = 1000;  // ended uploads remembered for their status

  // `now`: unix seconds (the system clock's; a test gives its own to see uploads expire).
  explicit UploadStore(FileStore& files, std::function<int64_t()> now = {});

  struct Upload {
    std::string id, owner, filename, purpose;
    std::string status = "pending";  // pending, completed, cancelled, expired
    int64_t bytes = 0, created_at = 0, expires_at = 0;
    int64_t file_expires_after = 0;       // seconds, for the file made on completion (0: never)
    std::optional<FileStore::File> file;  // once completed
    nlohmann::json object() const;        // OpenAI's Upload object
  };

  // The methods throw ApiError (404 for an id the owner has no upload under, 400 for the rest).
  Upload create(std::string id, const std::string& owner, std::string filename, std::string purpose, int64_t bytes,
                int64_t file_expires_after);
  // Adds a part under `part_id`; returns OpenAI's Part object.
  nlohmann::json add_part(const std::string& id, const std::string& owner, std::string part_id, std::string data);
  // Assembles the listed parts in their order into a file `file_id` of the file store: they must add
  // up to the declared bytes and, with `md5`, have that digest (else a 400 and the upload stays
  // pending). Parts not listed are dropped.
  Upload complete(const std::string& id, const std::string& owner, const std::vector<std::string>& part_ids,
                  const std::optional<std::string>& md5, std::string file_id);
  Upload cancel(const std::string& id, const std::string& owner);
  size_t pending();

 private:
  struct Pending {
    Upload upload;
    std::map<std::string, std::shared_ptr<const std::string>> parts;  // by part id
    size_t received = 0;                                              // bytes in parts
    size_t reserved = 0;                                              // bytes held in the file store
    bool completing = false;                                          // complete() is assembling it outside the lock
  };

  void drop_expired();                                                        // under mu_
  void end(std::map<std::string, Pending>::iterator it, const char* status);  // under mu_
  Pending& find_pending(const std::string& id, const std::string& owner);     // under mu_; throws

  FileStore& files_;
  std::function<int64_t()> now_;
  std::mutex mu_;
  std::map<std::string, Pending> pending_;  // by id
  std::deque<Upload> ended_;                // oldest first
  size_t parts_ = 0;                        // of the pending uploads
};

}  // namespace dpserve
