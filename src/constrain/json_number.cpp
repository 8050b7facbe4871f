#include "constrain/json_number.h"

#include <cmath>
#include <string>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

constexpr int64_t kClamp = 1000000000000000000;  // 1e18: bounds beyond are as good as unbounded

uint64_t pow10(int n) {
  uint64_t v = 1;
  for (int i = 0; i < n; ++i) v *= 10;
  return v;
}

uint64_t unbounded_top() { return pow10(kJsonMaxIntegerDigits) - 1; }

int digits_of(uint64_t v) { return v < 10 ? 1 : 1 + digits_of(v / 10); }

ExprId digit_range(Grammar& g, char lo, char hi) { return g.bytes(ByteSet::range(uint8_t(lo), uint8_t(hi))); }

ExprId any_digits(Grammar& g, int n) { return g.repeat(digit_range(g, '0', '9'), n, n); }

// Digit strings of s.size() digits that are >= s (or <= s).
ExprId at_least(Grammar& g, const std::string& s, size_t i) {
  if (i == s.size()) return g.empty();
  if (s.find_first_not_of('0', i) == std::string::npos) return any_digits(g, int(s.size() - i));
  std::vector<ExprId> alts{g.seq({digit_range(g, s[i], s[i]), at_least(g, s, i + 1)})};
  if (s[i] < '9') alts.push_back(g.seq({digit_range(g, char(s[i] + 1), '9'), any_digits(g, int(s.size() - i - 1))}));
  return g.alt(std::move(alts));
}

ExprId at_most(Grammar& g, const std::string& s, size_t i) {
  if (i == s.size()) return g.empty();
  if (s.find_first_not_of('9', i) == std::string::npos) return any_digits(g, int(s.size() - i));
  std::vector<ExprId> alts{g.seq({digit_range(g, s[i], s[i]), at_most(g, s, i + 1)})};
  if (s[i] > '0') alts.push_back(g.seq({digit_range(g, '0', char(s[i] - 1)), any_digits(g, int(s.size() - i - 1))}));
  return g.alt(std::move(alts));
}

// Digit strings between x and y of the same length.
ExprId same_length(Grammar& g, const std::string& x, const std::string& y, size_t i) {
  if (i == x.size()) return g.empty();
  if (x[i] == y[i]) return g.seq({digit_range(g, x[i], x[i]), same_length(g, x, y, i + 1)});
  const int rest = int(x.size() - i - 1);
  const bool low_full = x.find_first_not_of('0', i + 1) == std::string::npos;
  const bool high_full = y.find_first_not_of('9', i + 1) == std::string::npos;
  std::vector<ExprId> alts;
  const char mid_lo = low_full ? x[i] : char(x[i] + 1);
  const char mid_hi = high_full ? y[i] : char(y[i] - 1);
  if (!low_full) alts.push_back(g.seq({digit_range(g, x[i], x[i]), at_least(g, x, i + 1)}));
  if (mid_lo <= mid_hi) alts.push_back(g.seq({digit_range(g, mid_lo, mid_hi), any_digits(g, rest)}));
  if (!high_full) alts.push_back(g.seq({digit_range(g, y[i], y[i]), at_most(g, y, i + 1)}));
  return g.alt(std::move(alts));
}

// Naturals in [a, b] written without leading zeros.
ExprId naturals(Grammar& g, uint64_t a, uint64_t b) {
  std::vector<ExprId> alts;
  for (int len = digits_of(a); len <= digits_of(b); ++len) {
    const uint64_t lo = std::max(a, len == 1 ? uint64_t(0) : pow10(len - 1));
    const uint64_t hi = std::min(b, pow10(len) - 1);
    if (lo > hi) continue;
    alts.push_back(same_length(g, std::to_string(lo), std::to_string(hi), 0));
  }
  return g.alt(std::move(alts));
}

int64_t clamp(int64_t v) { return std::max(-kClamp, std::min(kClamp, v)); }

std::optional<int64_t> int_lo(std::optional<NumberBound> b) {
  if (!b) return std::nullopt;
  if (b->value < -double(kClamp)) return std::nullopt;
  if (b->value > double(kClamp)) return kClamp;
  const double c = std::ceil(b->value);
  return clamp(int64_t(c) + (b->exclusive && c == b->value ? 1 : 0));
}

std::optional<int64_t> int_hi(std::optional<NumberBound> b) {
  if (!b) return std::nullopt;
  if (b->value > double(kClamp)) return std::nullopt;
  if (b->value < -double(kClamp)) return -kClamp;
  const double f = std::floor(b->value);
  return clamp(int64_t(f) - (b->exclusive && f == b->value ? 1 : 0));
}

// Integers in [lo, hi], or nothing (not an error) when the range is empty.
std::optional<ExprId> integers(Grammar& g, std::optional<int64_t> lo, std::optional<int64_t> hi) {
  if (lo && hi && *lo > *hi) return std::nullopt;
  std::vector<ExprId> alts;
  // The non-negative part.
  if (!hi || *hi >= 0) {
    const uint64_t a = lo && *lo > 0 ? uint64_t(*lo) : 0;
    const uint64_t b = hi ? uint64_t(*hi) : std::max(unbounded_top(), a);
    alts.push_back(naturals(g, a, b));
  }
  // The negative part: '-' and a magnitude in [max(1, -hi), -lo].
  if (!lo || *lo < 0) {
    const uint64_t a = hi && *hi < 0 ? uint64_t(-*hi) : 1;
    const uint64_t b = lo ? uint64_t(-*lo) : std::max(unbounded_top(), a);
    alts.push_back(g.seq({g.literal("-"), naturals(g, a, b)}));
  }
  return g.alt(std::move(alts));
}

ExprId fraction(Grammar& g) { return g.seq({g.literal("."), g.repeat(digit_range(g, '0', '9'), 1, 16)}); }

}  // namespace

ExprId json_integer(Grammar& g, std::optional<int64_t> lo, std::optional<int64_t> hi) {
  if (lo) lo = clamp(*lo);
  if (hi) hi = clamp(*hi);
  auto e = integers(g, lo, hi);
  if (!e) fail("no integer lies between the minimum {} and the maximum {}", *lo, *hi);
  return *e;
}

ExprId json_integer_bounded(Grammar& g, std::optional<NumberBound> lo, std::optional<NumberBound> hi) {
  auto e = integers(g, int_lo(lo), int_hi(hi));
  if (!e) fail("no integer lies within the bounds (minimum {}, maximum {})", lo->value, hi->value);
  return *e;
}

ExprId json_number(Grammar& g, std::optional<NumberBound> lo, std::optional<NumberBound> hi) {
  if (!lo && !hi) {
    const ExprId exponent = g.seq({g.bytes(ByteSet::of('e') | ByteSet::of('E')),
                                   g.optional(g.bytes(ByteSet::of('+') | ByteSet::of('-'))),
                                   g.repeat(digit_range(g, '0', '9'), 1, 2)});
    // "-0.5" needs a "-0" integer part.
    return g.seq({g.optional(g.literal("-")), naturals(g, 0, unbounded_top()), g.optional(fraction(g)),
                  g.optional(exponent)});
  }
  const std::optional<int64_t> ilo = int_lo(lo), ihi = int_hi(hi);
  std::vector<ExprId> alts;
  if (auto e = integers(g, ilo, ihi)) alts.push_back(*e);
  // "k.ddd" with k >= 0 lies in [k, k + 1): needs k >= ilo and k + 1 <= hi.
  {
    const int64_t a = std::max<int64_t>(ilo.value_or(0), 0);
    std::optional<int64_t> b;
    if (hi) b = hi->value > double(kClamp) ? std::optional<int64_t>() : std::optional<int64_t>(int64_t(std::floor(hi->value)) - 1);
    if (!b || a <= *b) {
      const uint64_t top = b ? uint64_t(*b) : std::max<uint64_t>(unbounded_top(), uint64_t(a));
      alts.push_back(g.seq({naturals(g, uint64_t(a), top), fraction(g)}));
    }
  }
  // "-k.ddd" lies in (-(k + 1), -k]: needs -k <= ihi and -(k + 1) >= lo.
  {
    const int64_t a = std::max<int64_t>(ihi ? -*ihi : 0, 0);
    std::optional<int64_t> b;
    if (lo) b = lo->value < -double(kClamp) ? std::optional<int64_t>() : std::optional<int64_t>(int64_t(std::floor(-lo->value)) - 1);
    if (!b || a <= *b) {
      const uint64_t top = b ? uint64_t(*b) : std::max<uint64_t>(unbounded_top(), uint64_t(a));
      alts.push_back(g.seq({g.literal("-"), naturals(g, uint64_t(a), top), fraction(g)}));
    }
  }
  if (alts.empty())
    fail("the bounds (minimum {}, maximum {}) are too narrow to enforce: no integer lies between them",
         lo ? lo->value : -INFINITY, hi ? hi->value : INFINITY);
  return g.alt(std::move(alts));
}

}  // namespace dpserve::constrain
