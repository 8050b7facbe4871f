// The responses kept for previous_response_id and GET /v1/responses/{id}: in this process's memory,
// bounded by a count and by bytes (--max-stored-responses, --max-stored-responses-mb); when full,
// the oldest go first. Each belongs to the API key that made it: other callers cannot see it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace dpserve {

class ResponseStore {
 public:
  ResponseStore(size_t max_count, size_t max_bytes) : max_count_(max_count), max_bytes_(max_bytes) {}

  struct Entry {
    std::string owner;
    nlohmann::json response;              // the Response object as returned
    nlohmann::ordered_json conversation;  // input items then output items: what a follow-up continues
    size_t input_count = 0;               // how many of `conversation` were this response's input
  };

  // Keeps `e` under `id`, evicting the oldest until it fits; false (nothing kept) when it alone
  // exceeds the byte bound or the store holds nothing (max_count 0).
  bool put(const std::string& id, Entry e);
  // The entry of `id` if it exists and belongs to `owner`.
  std::optional<Entry> get(const std::string& id, const std::string& owner) const;
  bool erase(const std::string& id, const std::string& owner);

  size_t size() const;
  size_t bytes() const;
  size_t max_count() const { return max_count_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Slot {
    Entry entry;
    size_t bytes = 0;
    std::list<std::string>::iterator order;
  };
  size_t max_count_, max_bytes_;
  mutable std::mutex mu_;
  std::list<std::string> order_;  // oldest first
  std::unordered_map<std::string, Slot> slots_;
  size_t bytes_ = 0;
};

}  // namespace dpserve
