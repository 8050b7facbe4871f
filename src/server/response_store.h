// The responses kept for previous_response_id and GET /v1/responses/{id}: in this process's memory,
// bounded by a count and by bytes (--max-stored-responses, --max-stored-responses-mb). Each belongs
// to the API key that made it: other callers cannot see it, and when the store is full the oldest
// response of the key holding the most goes first, so one key cannot push out another's responses
// while it holds no more than they do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

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

  // Keeps `e` under `id`, evicting until it fits; false (nothing kept) when it alone exceeds the byte
  // bound or the store holds nothing (max_count 0).
  bool put(const std::string& id, const Entry& e);
  // put, but only over an entry of `id` and the same owner still kept: a background run's progress
  // does not bring back a response deleted or evicted while it ran.
  bool replace(const std::string& id, const Entry& e);
  // The entry of `id` if it exists and belongs to `owner` (without `with_conversation`, its
  // conversation left empty: a listing reads responses only).
  std::optional<Entry> get(const std::string& id, const std::string& owner, bool with_conversation = true) const;
  bool erase(const std::string& id, const std::string& owner);
  // Changes the entry of `id` (the owner's) by `fn`, one change at a time, so that concurrent changes
  // of an entry all land: kMissing when there is none, kTooBig (unchanged) when it would not fit.
  enum class Update { kDone, kMissing, kTooBig };
  Update update(const std::string& id, const std::string& owner, const std::function<void(Entry&)>& fn);

  // The owner's ids in the order they were first kept (a put or update over an id keeps its place).
  std::vector<std::string> ids(const std::string& owner) const;

  size_t size() const;
  // What the kept entries hold: their JSON text, which is how they are kept (a parsed tree of small
  // values takes tens of times its text), so the byte bound is the memory they use.
  size_t bytes() const;
  size_t max_count() const { return max_count_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Slot {
    std::string owner, response, conversation;  // JSON text
    size_t input_count = 0;
    size_t bytes = 0;
    uint64_t seq = 0;                        // when the id was first kept
    std::list<std::string>::iterator order;  // in its owner's list
  };
  struct Owner {
    std::list<std::string> order;  // oldest first
    size_t bytes = 0;
  };
  bool keep(const std::string& id, const Entry& e, bool only_present);
  void drop(std::unordered_map<std::string, Slot>::iterator it);
  // The owner whose oldest entry goes next: the one holding the most (by count when the count is
  // the bound that binds, else by bytes).
  std::map<std::string, Owner>::iterator victim(bool by_count);

  size_t max_count_, max_bytes_;
  mutable std::mutex mu_;
  std::mutex update_mu_;  // taken before mu_: one update at a time
  std::map<std::string, Owner> owners_;
  std::unordered_map<std::string, Slot> slots_;
  size_t bytes_ = 0;
  uint64_t next_seq_ = 0;
};

}  // namespace dpserve
