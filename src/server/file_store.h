// The files of the OpenAI Files API (/v1/files): uploaded batch inputs and the batches' outputs, in
// this process's memory, bounded in bytes (--max-file-store-mb); each belongs to the API key that
// made it, and other keys cannot see it. A file may expire (OpenAI's expires_after): from then on it
// is gone, its bytes free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace dpserve {

class FileStore {
 public:
  // `now`: unix seconds (the system clock's; a test gives its own to see files expire).
  explicit FileStore(size_t max_bytes, std::function<int64_t()> now = {});

  // The purposes a client's file may have here: "batch" (a Batch API input) and "vision" (an image
  // /v1/responses reads by its input_image file_id). The server's own files are "batch_output".
  static bool client_purpose(const std::string& purpose) { return purpose == "batch" || purpose == "vision"; }

  struct File {
    std::string id, owner, filename, purpose;
    int64_t created_at = 0;
    int64_t expires_at = 0;  // unix seconds; 0: never
    std::shared_ptr<const std::string> content;
    nlohmann::json object() const;  // OpenAI's File object
  };

  // Keeps a new file under `id` (the caller's fresh "file-..." id), expiring `expires_after` seconds
  // after its creation (0: never); nullopt (nothing kept) when it does not fit beside the others.
  // `reserved`: bytes the caller holds by reserve() for this file, given back as it is kept (and
  // still held when it is not).
  std::optional<File> put(std::string id, const std::string& owner, std::string filename, std::string purpose,
                          std::string content, int64_t expires_after = 0, size_t reserved = 0);
  // Holds `n` bytes of the bound for a file still arriving (an upload's parts); false (nothing held)
  // when they do not fit. release() gives them back.
  bool reserve(size_t n);
  void release(size_t n);
  std::optional<File> get(const std::string& id, const std::string& owner);
  // The owner's files, oldest first (with `purpose` only those).
  std::vector<File> list(const std::string& owner, const std::string& purpose = "");
  bool erase(const std::string& id, const std::string& owner);
  size_t bytes();  // kept and reserved
  size_t max_bytes() const { return max_bytes_; }

 private:
  void drop_expired();  // under mu_

  const size_t max_bytes_;
  std::function<int64_t()> now_;
  mutable std::mutex mu_;
  std::map<std::string, File> files_;  // by id
  std::vector<std::string> order_;     // ids, oldest first
  size_t bytes_ = 0;
  int64_t next_expiry_ = 0;  // the earliest expires_at kept (0: none), so most calls skip the scan
};

}  // namespace dpserve
