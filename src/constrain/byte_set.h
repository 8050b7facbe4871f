// A set of bytes (256 bits): the terminal alphabet of every grammar in src/constrain. Grammars work on
// bytes, not characters, so a token that ends inside a multi-byte UTF-8 character is just a prefix.
#pragma once

#include <cstdint>

namespace dpserve::constrain {

struct ByteSet {
  uint64_t w[4] = {0, 0, 0, 0};

  static ByteSet of(uint8_t b) {
    ByteSet s;
    s.set(b);
    return s;
  }
  static ByteSet range(uint8_t lo, uint8_t hi) {
    ByteSet s;
    for (int b = lo; b <= hi; ++b) s.set(uint8_t(b));
    return s;
  }
  static ByteSet all() {
    ByteSet s;
    for (auto& x : s.w) x = ~uint64_t(0);
    return s;
  }

  void set(uint8_t b) { w[b >> 6] |= uint64_t(1) << (b & 63); }
  bool test(uint8_t b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  bool empty() const { return (w[0] | w[1] | w[2] | w[3]) == 0; }
  int count() const {
    return __builtin_popcountll(w[0]) + __builtin_popcountll(w[1]) + __builtin_popcountll(w[2]) +
           __builtin_popcountll(w[3]);
  }
  ByteSet& operator|=(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) w[i] |= o.w[i];
    return *this;
  }
  friend ByteSet operator|(ByteSet a, const ByteSet& b) { return a |= b; }
  friend ByteSet operator&(ByteSet a, const ByteSet& b) {
    for (int i = 0; i < 4; ++i) a.w[i] &= b.w[i];
    return a;
  }
  friend ByteSet operator~(ByteSet a) {
    for (auto& x : a.w) x = ~x;
    return a;
  }
  friend bool operator==(const ByteSet& a, const ByteSet& b) {
    return a.w[0] == b.w[0] && a.w[1] == b.w[1] && a.w[2] == b.w[2] && a.w[3] == b.w[3];
  }
};

}  // namespace dpserve::constrain
