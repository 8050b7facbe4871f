// The files of the OpenAI Files API (/v1/files): uploaded batch inputs and the batches' outputs, in
// this process's memory, bounded in bytes (--max-file-store-mb); each belongs to the API key that
// made it, and other keys cannot see it.
#pragma once

#include <cstddef>
#include <cstdint>
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
  explicit FileStore(size_t max_bytes) : max_bytes_(max_bytes) {}

  struct File {
    std::string id, owner, filename, purpose;
    int64_t created_at = 0;
    std::shared_ptr<const std::string> content;
    nlohmann::json object() const;  // OpenAI's File object
  };

  // Keeps a new file under `id` (the caller's fresh "file-..." id); nullopt (nothing kept) when it
  // does not fit beside the others.
  std::optional<File> put(std::string id, const std::string& owner, std::string filename, std::string purpose,
                          std::string content);
  std::optional<File> get(const std::string& id, const std::string& owner) const;
  // The owner's files, oldest first (with `purpose` only those).
  std::vector<File> list(const std::string& owner, const std::string& purpose = "") const;
  bool erase(const std::string& id, const std::string& owner);
  size_t bytes() const;
  size_t max_bytes() const { return max_bytes_; }

 private:
  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::map<std::string, File> files_;  // by id
  std::vector<std::string> order_;     // ids, oldest first
  size_t bytes_ = 0;
};

}  // namespace dpserve
