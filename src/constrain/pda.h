// The run-time side of an Automaton: a configuration is (rule, state, stack); the stack is a chain
// of return points kept hash-consed in an arena, so equal stacks are equal indices. `Pda` computes
// closures (following calls and returns until a byte must be read) and byte steps over sets of
// configurations, the one operation both the matcher and the token-mask precomputation need.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "constrain/automaton.h"

namespace dpserve::constrain {

inline constexpr int32_t kBottom = -1;  // the empty stack (below it: the end of the input, or of a cache walk)

struct Config {
  uint32_t rule;
  int32_t state;
  int32_t stack;
  friend bool operator==(const Config& a, const Config& b) {
    return a.rule == b.rule && a.state == b.state && a.stack == b.stack;
  }
};

// Configurations that read a byte next, plus whether the bottom of the stack was reached with the
// rule accepting (at the real bottom: the grammar may end; in a cache walk: the walked rule returns).
struct ConfigSet {
  std::vector<Config> configs;
  bool at_bottom_end = false;
  void clear() {
    configs.clear();
    at_bottom_end = false;
  }
  bool dead() const { return configs.empty() && !at_bottom_end; }
};

class StackArena {
 public:
  struct Node {
    uint32_t rule;
    int32_t ret;     // the caller's state after the return
    int32_t parent;  // kBottom or a node
  };
  int32_t push(int32_t parent, uint32_t rule, int32_t ret);
  const Node& node(int32_t i) const { return nodes_[size_t(i)]; }
  size_t size() const { return nodes_.size(); }
  // Nodes made after mark() are dropped by rollback() (scratch work on top of a live state).
  size_t mark() const { return nodes_.size(); }
  void rollback(size_t mark);

 private:
  static uint64_t key(int32_t parent, uint32_t rule, int32_t ret) {
    return (uint64_t(uint32_t(parent)) << 32) ^ (uint64_t(rule) << 24) ^ uint64_t(uint32_t(ret));
  }
  std::vector<Node> nodes_;
  std::unordered_multimap<uint64_t, int32_t> index_;
};

class Pda {
 public:
  // Configurations beyond this in one set mean an ambiguity explosion: refused with an error.
  static constexpr size_t kMaxConfigs = 20000;

  explicit Pda(const Automaton& a) : a_(a) {}

  // Adds the closure of `c` to `out`.
  void closure(StackArena& arena, Config c, ConfigSet& out);
  // out = closure of every configuration of `in` moved by byte `b`.
  void step(StackArena& arena, const ConfigSet& in, uint8_t b, ConfigSet& out);
  // The initial set of the grammar.
  void start(StackArena& arena, ConfigSet& out);
  const Automaton& automaton() const { return a_; }

 private:
  void add_closure(StackArena& arena, Config c, ConfigSet& out);
  struct ConfigHash {
    size_t operator()(const Config& c) const {
      return size_t((uint64_t(c.rule) * 0x9E3779B97F4A7C15ull) ^ (uint64_t(uint32_t(c.state)) << 20) ^
                    uint64_t(uint32_t(c.stack)) * 0xC2B2AE3D27D4EB4Full);
    }
  };
  void begin_set();
  bool visit(const Config& c);

  const Automaton& a_;
  std::vector<Config> work_;
  // Configurations visited while building the current set (closures can revisit through
  // empty rules); a small open-addressing table cleared per set.
  std::vector<Config> seen_;
  std::vector<uint32_t> seen_gen_;  // a slot holds an entry of this set when it equals gen_
  uint32_t gen_ = 0;
  size_t seen_count_ = 0;
};

}  // namespace dpserve::constrain
