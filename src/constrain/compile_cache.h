// Compiled constraints by their text, least recently used dropped first, by count and by bytes:
// a schema many requests send compiles once, and distinct large schemas cannot pile up (a 70 KB
// schema of 2000 properties compiles to megabytes). Failures are remembered too, so a bad schema
// does not recompile per request. At most kMaxConcurrentCompiles compile at once (the others wait):
// one compile may take up to its automaton limit in memory, and distinct hostile schemas sent
// together must not multiply that.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <semaphore>
#include <string>
#include <unordered_map>

#include "constrain/constraint.h"

namespace dpserve::constrain {

class CompileCache {
 public:
  // `json`: how JSON constraints are compiled (the server's whitespace policy).
  static constexpr size_t kDefaultMaxBytes = size_t(128) << 20;
  static constexpr int kMaxConcurrentCompiles = 2;
  explicit CompileCache(size_t capacity = 256, JsonSchemaOptions json = {}, size_t max_bytes = kDefaultMaxBytes)
      : capacity_(capacity), max_bytes_(max_bytes), json_(std::move(json)) {}

  // The automaton for `spec`, compiled on a miss. Throws dpserve::Error as compile_constraint does.
  std::shared_ptr<const Automaton> get(const ConstraintSpec& spec);

  uint64_t hits() const;
  uint64_t misses() const;
  size_t bytes() const;  // held by the cached automata and keys

 private:
  struct Slot {
    std::shared_ptr<const Automaton> automaton;
    std::string error;  // set when compiling failed
    std::list<std::string>::iterator lru;
    size_t bytes = 0;
  };
  size_t capacity_, max_bytes_, bytes_ = 0;
  JsonSchemaOptions json_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> map_;
  std::list<std::string> lru_;  // most recent first
  uint64_t hits_ = 0, misses_ = 0;
  std::counting_semaphore<kMaxConcurrentCompiles> compiling_{kMaxConcurrentCompiles};
};

}  // namespace dpserve::constrain
