#include "constrain/codepoint_set.h"

#include <algorithm>

namespace dpserve::constrain {
namespace {

constexpr uint32_t kSurrogateLo = 0xD800, kSurrogateHi = 0xDFFF;

int encoded_length(uint32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

void encode(uint32_t c, uint8_t* out, int n) {
  if (n == 1) {
    out[0] = uint8_t(c);
    return;
  }
  static constexpr uint8_t kLead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
  for (int i = n - 1; i > 0; --i) {
    out[i] = uint8_t(0x80 | (c & 0x3F));
    c >>= 6;
  }
  out[0] = uint8_t(kLead[n] | c);
}

// [lo, hi] with one encoded length: split until every byte position ranges independently (the
// standard construction; each continuation byte covers a full 6-bit block except at the ends).
void split_same_length(uint32_t lo, uint32_t hi, std::vector<CodepointSet::ByteRangeSeq>& out) {
  const int n = encoded_length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (uint32_t(1) << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split_same_length(lo, lo | m, out);
        split_same_length((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split_same_length(lo, (hi & ~m) - 1, out);
        split_same_length(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  encode(lo, a, n);
  encode(hi, b, n);
  CodepointSet::ByteRangeSeq seq;
  for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
  out.push_back(std::move(seq));
}

}  // namespace

CodepointSet CodepointSet::of(uint32_t lo, uint32_t hi) {
  CodepointSet s;
  s.add(lo, hi);
  return s;
}

CodepointSet CodepointSet::any() { return of(0, kMax); }

void CodepointSet::add(uint32_t lo, uint32_t hi) {
  hi = std::min(hi, kMax);
  if (lo > hi) return;
  ranges_.push_back({lo, hi});
  normalize();
}

void CodepointSet::add(const CodepointSet& o) {
  ranges_.insert(ranges_.end(), o.ranges_.begin(), o.ranges_.end());
  normalize();
}

void CodepointSet::normalize() {
  // Surrogates are cut out first, so complements and encodings never meet them.
  std::vector<Range> cut;
  for (const Range& r : ranges_) {
    if (r.hi < kSurrogateLo || r.lo > kSurrogateHi) {
      cut.push_back(r);
      continue;
    }
    if (r.lo < kSurrogateLo) cut.push_back({r.lo, kSurrogateLo - 1});
    if (r.hi > kSurrogateHi) cut.push_back({kSurrogateHi + 1, r.hi});
  }
  std::sort(cut.begin(), cut.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
  ranges_.clear();
  for (const Range& r : cut) {
    if (!ranges_.empty() && r.lo <= ranges_.back().hi + 1) {
      ranges_.back().hi = std::max(ranges_.back().hi, r.hi);
    } else {
      ranges_.push_back(r);
    }
  }
}

CodepointSet CodepointSet::complement() const {
  CodepointSet out;
  uint32_t next = 0;
  for (const Range& r : ranges_) {
    if (r.lo > next) out.ranges_.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMax) out.ranges_.push_back({next, kMax});
  out.normalize();
  return out;
}

CodepointSet CodepointSet::intersect(const CodepointSet& o) const {
  CodepointSet out;
  size_t i = 0, j = 0;
  while (i < ranges_.size() && j < o.ranges_.size()) {
    const uint32_t lo = std::max(ranges_[i].lo, o.ranges_[j].lo);
    const uint32_t hi = std::min(ranges_[i].hi, o.ranges_[j].hi);
    if (lo <= hi) out.ranges_.push_back({lo, hi});
    if (ranges_[i].hi < o.ranges_[j].hi) {
      ++i;
    } else {
      ++j;
    }
  }
  return out;
}

bool CodepointSet::contains(uint32_t c) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), c, [](uint32_t v, const Range& r) { return v < r.lo; });
  return it != ranges_.begin() && std::prev(it)->hi >= c;
}

std::vector<CodepointSet::ByteRangeSeq> CodepointSet::utf8_sequences() const {
  std::vector<ByteRangeSeq> out;
  static constexpr uint32_t kLengthEnd[4] = {0x7F, 0x7FF, 0xFFFF, kMax};
  for (const Range& r : ranges_) {
    uint32_t lo = r.lo;
    for (uint32_t end : kLengthEnd) {
      if (lo > r.hi) break;
      if (lo > end) continue;
      const uint32_t hi = std::min(r.hi, end);
      split_same_length(lo, hi, out);
      lo = hi + 1;
    }
  }
  return out;
}

}  // namespace dpserve::constrain
