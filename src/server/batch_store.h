// The jobs of a batch API (OpenAI's /v1/batches, Anthropic's /v1/messages/batches) by id, each with the object clients
// poll; in this process's memory, the oldest finished ones dropped beyond a count. Each belongs to the API key that
// made it.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dpserve {

class BatchStore {
 public:
  explicit BatchStore(size_t max_count) : max_count_(max_count) {}

  struct Batch {
    std::string id, owner;
    mutable std::mutex mu;
    nlohmann::json object;     // OpenAI's Batch object (or Anthropic's MessageBatch); read and written under mu
    std::string results_file;  // Anthropic's: the file (ctx.files) its results went to; under mu
    nlohmann::json snapshot() const {
      std::lock_guard<std::mutex> lk(mu);
      return object;
    }
  };

  // Keeps a new batch (its object's "id"); beyond the count the oldest finished one goes.
  std::shared_ptr<Batch> add(const std::string& owner, nlohmann::json object);
  std::shared_ptr<Batch> get(const std::string& id, const std::string& owner) const;
  // The owner's batches, oldest first.
  std::vector<std::shared_ptr<Batch>> list(const std::string& owner) const;
  void erase(const std::string& id);

 private:
  const size_t max_count_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Batch>> batches_;
  std::deque<std::string> order_;  // oldest first
};

// Whether a Batch status is final (completed, failed, expired, cancelled).
bool batch_finished(const std::string& status);
// Whether a batch object has ended: OpenAI's final status or Anthropic's processing_status "ended".
bool batch_object_ended(const nlohmann::json& object);

}  // namespace dpserve
