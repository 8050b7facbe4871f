#include "constrain/decimal.h"

#include <charconv>
#include <cstdlib>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

Decimal normalized(Decimal d) {
  const size_t lead = d.whole.find_first_not_of('0');
  d.whole = lead == std::string::npos ? "0" : d.whole.substr(lead);
  const size_t last = d.frac.find_last_not_of('0');
  d.frac = last == std::string::npos ? "" : d.frac.substr(0, last + 1);
  if (d.whole == "0" && d.frac.empty()) d.negative = false;
  return d;
}

// Compares magnitudes, ignoring signs.
int compare_magnitude(const Decimal& a, const Decimal& b) {
  if (a.whole.size() != b.whole.size()) return a.whole.size() < b.whole.size() ? -1 : 1;
  if (int c = a.whole.compare(b.whole)) return c < 0 ? -1 : 1;
  const size_t n = std::max(a.frac.size(), b.frac.size());
  const int c = (a.frac + std::string(n - a.frac.size(), '0')).compare(b.frac + std::string(n - b.frac.size(), '0'));
  return c < 0 ? -1 : c > 0 ? 1 : 0;
}

}  // namespace

Decimal Decimal::of(double v) {
  // Scientific form so huge and tiny values come out as a few digits and an exponent ("5e-324"),
  // which to_chars makes the shortest that round-trips.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  DP_CHECK(r.ec == std::errc(), "to_chars failed on {}", v);
  const std::string s(buf, r.ptr);
  Decimal d;
  size_t i = 0;
  if (s[i] == '-') d.negative = true, ++i;
  const size_t e = s.find('e');
  std::string digits;
  for (size_t j = i; j < e; ++j)
    if (s[j] != '.') digits += s[j];
  const long point = 1 + std::strtol(s.c_str() + e + 1, nullptr, 10);  // digits before the point
  if (point <= 0) {  // whole stays "0"
    d.frac = std::string(size_t(-point), '0') + digits;
  } else if (size_t(point) >= digits.size()) {
    d.whole = digits + std::string(size_t(point) - digits.size(), '0');
  } else {
    d.whole = digits.substr(0, size_t(point));
    d.frac = digits.substr(size_t(point));
  }
  return normalized(d);
}

Decimal Decimal::rounded(int places, bool up) const {
  if (int(frac.size()) <= places) return *this;
  Decimal d = *this;
  d.frac.resize(size_t(places));  // truncated: towards zero
  // Away from zero when the direction asks for it (the dropped digits are not all zero, as
  // `frac` has no trailing zeros).
  if (up != negative) {
    std::string digits = d.whole + d.frac;
    size_t i = digits.size();
    while (i > 0 && digits[i - 1] == '9') digits[--i] = '0';
    if (i == 0) digits.insert(digits.begin(), '1');
    else ++digits[i - 1];
    d.whole = digits.substr(0, digits.size() - size_t(places));
    d.frac = digits.substr(digits.size() - size_t(places));
  }
  return normalized(d);
}

Decimal Decimal::negated() const {
  Decimal d = *this;
  d.negative = !negative;
  return normalized(d);
}

int compare(const Decimal& a, const Decimal& b) {
  if (a.negative != b.negative) return a.negative ? -1 : 1;
  const int c = compare_magnitude(a, b);
  return a.negative ? -c : c;
}

}  // namespace dpserve::constrain
