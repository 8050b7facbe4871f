// Compiled constraints by their text, least recently used dropped first: a schema many requests
// send compiles once. Failures are remembered too, so a bad schema does not recompile per request.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "constrain/constraint.h"

namespace dpserve::constrain {

class CompileCache {
 public:
  // `json`: how JSON constraints are compiled (the server's whitespace policy).
  explicit CompileCache(size_t capacity = 256, JsonSchemaOptions json = {}) : capacity_(capacity), json_(std::move(json)) {}

  // The automaton for `spec`, compiled on a miss. Throws dpserve::Error as compile_constraint does.
  std::shared_ptr<const Automaton> get(const ConstraintSpec& spec);

  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Slot {
    std::shared_ptr<const Automaton> automaton;
    std::string error;  // set when compiling failed
    std::list<std::string>::iterator lru;
  };
  size_t capacity_;
  JsonSchemaOptions json_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> map_;
  std::list<std::string> lru_;  // most recent first
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace dpserve::constrain
