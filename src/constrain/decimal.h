// Exact decimal numbers, for the bounds of JSON Schema numbers: the grammar writes decimals digit
// by digit, so a bound has to be a digit string too, compared and rounded exactly (a double cannot
// say whether "0.1" is above 0.1).
#pragma once

#include <string>

namespace dpserve::constrain {

struct Decimal {
  bool negative = false;  // never set for zero
  std::string whole = "0";  // no leading zeros
  std::string frac;         // no trailing zeros

  // The shortest decimal that reads back as `v` (finite). Reading a decimal as a double rounds
  // monotonically, so a written x >= decimal_of(b) reads as a double >= b, and x <= decimal_of(b)
  // as one <= b: bounds hold under validators that compare doubles.
  static Decimal of(double v);
  // Rounded to `places` fraction digits, towards +infinity (`up`) or -infinity.
  Decimal rounded(int places, bool up) const;
  Decimal negated() const;
  // Digits after the point.
  int places() const { return int(frac.size()); }
};

// <0, 0, >0 as a < b, a == b, a > b.
int compare(const Decimal& a, const Decimal& b);

}  // namespace dpserve::constrain
