// JSON numbers as grammar expressions, with the bounds of JSON Schema (minimum, maximum and their
// exclusive forms) enforced by the grammar, exactly for every number it writes.
#pragma once

#include <cstdint>
#include <optional>

#include "constrain/grammar.h"

namespace dpserve::constrain {

// Digits of the integer part when a side is unbounded (past 2^53 JSON parsers lose precision).
inline constexpr int kJsonMaxIntegerDigits = 16;
// Digits after the point (more only where bounds closer than 1e-16 need them).
inline constexpr int kJsonFractionDigits = 16;

struct NumberBound {
  double value = 0;
  bool exclusive = false;
};

// Decimal integers without leading zeros in [lo, hi] (absent: unbounded, up to
// kJsonMaxIntegerDigits digits). Throws dpserve::Error when the range is empty.
ExprId json_integer(Grammar& g, std::optional<int64_t> lo, std::optional<int64_t> hi);
ExprId json_integer_bounded(Grammar& g, std::optional<NumberBound> lo, std::optional<NumberBound> hi);

// JSON numbers; with bounds: every number within them written without exponent, with at most
// kJsonFractionDigits fraction digits (or as many as the bounds need to hold any) and no more integer
// digits than kJsonMaxIntegerDigits or the bounds need. Within as validators see it, comparing doubles:
// "1.9999999999999999" reads as 2, so exclusiveMaximum 2 leaves it out. Throws dpserve::Error when no
// number lies within the bounds.
ExprId json_number(Grammar& g, std::optional<NumberBound> lo, std::optional<NumberBound> hi);

}  // namespace dpserve::constrain
