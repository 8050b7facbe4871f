// Sets of Unicode scalar values as sorted ranges (character classes of regexes and GBNF), and their
// UTF-8 encodings as sequences of byte ranges, so a character class becomes a byte-level automaton.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace dpserve::constrain {

class CodepointSet {
 public:
  struct Range {
    uint32_t lo, hi;  // inclusive
  };
  static constexpr uint32_t kMax = 0x10FFFF;

  CodepointSet() = default;
  static CodepointSet of(uint32_t lo, uint32_t hi);
  static CodepointSet any();  // every scalar value (surrogates are not characters)

  void add(uint32_t lo, uint32_t hi);
  void add(uint32_t c) { add(c, c); }
  void add(const CodepointSet& o);
  CodepointSet complement() const;  // within [0, kMax] minus the surrogates
  CodepointSet intersect(const CodepointSet& o) const;
  bool contains(uint32_t c) const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }

  // The UTF-8 encodings of the set as alternatives, each a sequence of inclusive byte ranges
  // (every member's encoding matches exactly one alternative).
  using ByteRangeSeq = std::vector<std::pair<uint8_t, uint8_t>>;
  std::vector<ByteRangeSeq> utf8_sequences() const;

 private:
  void normalize();
  std::vector<Range> ranges_;  // sorted, disjoint, non-adjacent, no surrogates
};

}  // namespace dpserve::constrain
