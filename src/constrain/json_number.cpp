#include "constrain/json_number.h"

#include <cfloat>
#include <cmath>
#include <string>

#include "constrain/decimal.h"
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

// Naturals between the digit strings lo <= hi (no leading zeros), written without leading zeros.
ExprId naturals(Grammar& g, const std::string& lo, const std::string& hi) {
  std::vector<ExprId> alts;
  for (size_t len = lo.size(); len <= hi.size(); ++len) {
    const std::string a = len == lo.size() ? lo : std::string(len, '0').replace(0, 1, 1, '1');
    const std::string b = len == hi.size() ? hi : std::string(len, '9');
    alts.push_back(same_length(g, a, b, 0));
  }
  return g.alt(std::move(alts));
}

// Naturals in [a, b] written without leading zeros.
ExprId naturals(Grammar& g, uint64_t a, uint64_t b) {
  if (a > b) return g.nothing();
  return naturals(g, std::to_string(a), std::to_string(b));
}

int64_t clamp(int64_t v) { return std::max(-kClamp, std::min(kClamp, v)); }

std::optional<int64_t> int_lo(std::optional<NumberBound> b) {
  if (!b) return std::nullopt;
  if (b->value < -double(kClamp)) return std::nullopt;
  // Clamping a minimum above the clamp down to it would let numbers below the minimum through.
  if (b->value > double(kClamp))
    fail("an integer minimum above {} is not supported (minimum {})", kClamp, b->value);
  const double c = std::ceil(b->value);
  return clamp(int64_t(c) + (b->exclusive && c == b->value ? 1 : 0));
}

std::optional<int64_t> int_hi(std::optional<NumberBound> b) {
  if (!b) return std::nullopt;
  if (b->value > double(kClamp)) return std::nullopt;
  if (b->value < -double(kClamp))
    fail("an integer maximum below -{} is not supported (maximum {})", kClamp, b->value);
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

ExprId fraction(Grammar& g) {
  return g.seq({g.literal("."), g.repeat(digit_range(g, '0', '9'), 1, kJsonFractionDigits)});
}

// Continuations from digit i of a fraction whose digits so far equal lo's (when at_lo) and hi's (when
// at_hi): up to lo.size() - i more digits, at least one when `nonempty`, such that the fraction padded
// with zeros to lo.size() digits lies in [lo, hi] (strings of equal length compare as numbers).
ExprId fraction_digits(Grammar& g, const std::string& lo, const std::string& hi, size_t i, bool at_lo, bool at_hi,
                       bool nonempty) {
  // Past the last non-zero digit of lo (or 9 of hi) every continuation keeps the bound.
  if (at_lo && lo.find_first_not_of('0', i) == std::string::npos) at_lo = false;
  if (at_hi && hi.find_first_not_of('9', i) == std::string::npos) at_hi = false;
  const int rest = int(lo.size() - i);
  if (!at_lo && !at_hi) return g.repeat(digit_range(g, '0', '9'), nonempty ? 1 : 0, rest);
  std::vector<ExprId> alts;
  // Stopping here pads with zeros, below lo while lo has non-zero digits left.
  if (!nonempty && !at_lo) alts.push_back(g.empty());
  auto then = [&](char a, char b, bool lo_next, bool hi_next) {
    if (a > b) return;
    const ExprId next = lo_next || hi_next ? fraction_digits(g, lo, hi, i + 1, lo_next, hi_next, false)
                                           : g.repeat(digit_range(g, '0', '9'), 0, rest - 1);
    alts.push_back(g.seq({digit_range(g, a, b), next}));
  };
  if (at_lo && at_hi && lo[i] == hi[i]) {
    then(lo[i], lo[i], true, true);
  } else {
    if (at_lo) then(lo[i], lo[i], true, false);
    then(at_lo ? char(lo[i] + 1) : '0', at_hi ? char(hi[i] - 1) : '9', false, false);
    if (at_hi) then(hi[i], hi[i], false, true);
  }
  return g.alt(std::move(alts));
}

// What follows an integer part: nothing or "." and 1..lo.size() digits, the fraction within [lo, hi]
// (digit strings of one length, lo <= hi).
ExprId fraction(Grammar& g, const std::string& lo, const std::string& hi) {
  std::vector<ExprId> alts;
  if (lo.find_first_not_of('0') == std::string::npos) alts.push_back(g.empty());
  alts.push_back(g.seq({g.literal("."), fraction_digits(g, lo, hi, 0, true, true, true)}));
  return g.alt(std::move(alts));
}

// Whole parts (digit strings without leading zeros) compared as numbers.
bool whole_less(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() < b.size() : a < b;
}

std::string plus_one(std::string s) {
  size_t i = s.size();
  while (i > 0 && s[i - 1] == '9') s[--i] = '0';
  if (i == 0) return "1" + s;
  ++s[i - 1];
  return s;
}

std::string minus_one(std::string s) {  // s > 0
  size_t i = s.size();
  while (s[i - 1] == '0') s[--i] = '9';
  --s[i - 1];
  return s.size() > 1 && s[0] == '0' ? s.substr(1) : s;
}

// Non-negative numbers in [a, b] (at most `places` fraction digits each, a <= b) written as an integer
// part without leading zeros and an optional fraction of 1..places digits.
ExprId magnitudes(Grammar& g, const Decimal& a, const Decimal& b, int places) {
  auto pad = [&](const std::string& f) { return f + std::string(size_t(places) - f.size(), '0'); };
  const std::string zeros(size_t(places), '0'), nines(size_t(places), '9');
  if (a.whole == b.whole) return g.seq({g.literal(a.whole), fraction(g, pad(a.frac), pad(b.frac))});
  std::vector<ExprId> alts{g.seq({g.literal(a.whole), fraction(g, pad(a.frac), nines)})};
  const std::string mid_lo = plus_one(a.whole);
  if (whole_less(mid_lo, b.whole))
    alts.push_back(g.seq({naturals(g, mid_lo, minus_one(b.whole)), fraction(g, zeros, nines)}));
  alts.push_back(g.seq({g.literal(b.whole), fraction(g, zeros, pad(b.frac))}));
  return g.alt(std::move(alts));
}

// The upper end of magnitudes from `from`: b, but with no more integer digits than kJsonMaxIntegerDigits
// (or from's), the same as an unbounded side gets: maximum 1e300 should not invite 300-digit outputs.
Decimal capped(const Decimal& from, const Decimal& b, int places) {
  Decimal cap;
  cap.whole = std::string(std::max<size_t>(kJsonMaxIntegerDigits, from.whole.size()), '9');
  cap.frac = std::string(size_t(places), '9');
  return compare(b, cap) < 0 ? b : cap;
}

std::string describe(std::optional<NumberBound> lo, std::optional<NumberBound> hi) {
  std::string s;
  if (lo) s = fmt::format("{} {}", lo->exclusive ? "exclusiveMinimum" : "minimum", lo->value);
  if (hi) s += fmt::format("{}{} {}", lo ? ", " : "", hi->exclusive ? "exclusiveMaximum" : "maximum", hi->value);
  return s;
}

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
  // Validators compare doubles: an exclusive bound is the inclusive bound of the next double inwards.
  // Decimals past the largest finite double read as infinity, so no output goes beyond it.
  double lo_v = -DBL_MAX, hi_v = DBL_MAX;
  if (lo) lo_v = std::max(lo_v, lo->exclusive ? std::nextafter(lo->value, INFINITY) : lo->value);
  if (hi) hi_v = std::min(hi_v, hi->exclusive ? std::nextafter(hi->value, -INFINITY) : hi->value);
  if (!(lo_v <= hi_v)) {
    // Exclusive bounds on adjacent doubles: decimals lie between them, but each reads as one of the two.
    const bool adjacent = lo && hi && lo->value < hi->value;
    fail("no number lies within the bounds ({}){}", describe(lo, hi),
         adjacent ? ": they are adjacent doubles, and validators read any number between as one of them" : "");
  }
  const Decimal l = Decimal::of(lo_v), h = Decimal::of(hi_v);
  // Outputs are decimals of at most `places` fraction digits, so the bounds can be rounded inwards to
  // that many without losing a single one. 16 places unless the bounds hold no such decimal; the loop
  // stops at the bounds' own digits at the latest, where rounding leaves them as they are (l <= h).
  int places = kJsonFractionDigits;
  while (compare(l.rounded(places, true), h.rounded(places, false)) > 0) ++places;
  const Decimal lo_d = l.rounded(places, true), hi_d = h.rounded(places, false);
  std::vector<ExprId> alts;
  if (!hi_d.negative) {
    const Decimal from = lo_d.negative ? Decimal() : lo_d;
    alts.push_back(magnitudes(g, from, capped(from, hi_d, places), places));
  }
  // Negative values as '-' and a magnitude; "-0", "-0.0" (which are zero) are left out, as the integer
  // grammar leaves out "-0".
  if (lo_d.negative) {
    Decimal step;
    step.frac = std::string(size_t(places - 1), '0') + "1";
    const Decimal from = hi_d.negative ? hi_d.negated() : step;
    alts.push_back(g.seq({g.literal("-"), magnitudes(g, from, capped(from, lo_d.negated(), places), places)}));
  }
  return g.alt(std::move(alts));
}

}  // namespace dpserve::constrain
