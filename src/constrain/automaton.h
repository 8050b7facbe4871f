// The pushdown automaton a grammar compiles to: one deterministic automaton per rule over byte
// classes and calls of other rules (a recursive transition network). Rules that are not recursive
// are inlined into their callers, so a JSON schema without recursive $refs becomes a single DFA;
// recursion (nested values of `json_object`, recursive $refs, recursive GBNF rules) stays as calls
// and becomes a stack at run time (see pda.h). Immutable once built, shared by every request that
// uses the same constraint, and serializable so rank 0 compiles it once for all ranks.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "constrain/grammar.h"

namespace dpserve::constrain {

class Automaton {
 public:
  enum StateFlag : uint8_t {
    kAccepting = 1,  // the rule may end here
    kHasBytes = 2,   // some byte leads on
    kHasCalls = 4,   // some rule call leads on
  };
  struct Call {
    uint32_t rule;   // the rule called
    int32_t target;  // the caller's state once it returns
  };
  struct Rule {
    std::string name;
    int32_t start = 0;
    uint32_t n_classes = 1;
    std::array<uint8_t, 256> byte_class{};  // bytes that behave alike share a class
    std::vector<int32_t> next;               // [state * n_classes + class] -> state, -1: no move
    std::vector<uint8_t> flags;              // StateFlag bits per state
    std::vector<uint32_t> call_begin;        // calls of state s: calls[call_begin[s] .. call_begin[s+1])
    std::vector<Call> calls;
    bool has_calls = false;                  // any state calls a rule (else the rule is a plain DFA)

    int32_t num_states() const { return int32_t(flags.size()); }
    int32_t step(int32_t s, uint8_t b) const { return next[size_t(s) * n_classes + byte_class[b]]; }
  };

  // Throws dpserve::Error naming the problem (undefined or left-recursive rule, a grammar that
  // accepts nothing, or one too large to build).
  static std::shared_ptr<const Automaton> build(const Grammar& g);
  // Divides the work one build may spend (automaton states, construction steps) by 2^shift: the fuzz
  // targets raise it at start-up (fuzz/fuzz_caps.cpp). 0 in production; set it only before any build.
  static inline int work_caps_shift = 0;

  const Rule& rule(uint32_t r) const { return rules_[r]; }
  uint32_t num_rules() const { return uint32_t(rules_.size()); }
  uint32_t root() const { return 0; }
  size_t num_states() const;
  size_t bytes() const;  // memory the automaton holds (its tables), for byte-bounded caches

  std::string serialize() const;
  // Throws dpserve::Error on a malformed or truncated buffer.
  static std::shared_ptr<const Automaton> deserialize(std::string_view data);
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  void finish();  // flags that derive from the tables, fingerprint
  std::vector<Rule> rules_;  // rules_[0] is the root
  uint64_t fingerprint_ = 0;
  friend class AutomatonBuilder;
};

}  // namespace dpserve::constrain
