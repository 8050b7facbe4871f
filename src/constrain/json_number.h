// JSON numbers as grammar expressions, with the bounds of JSON Schema (minimum, maximum and their
// exclusive forms) enforced by the grammar: integers exactly, decimals by their integer part.
#pragma once

#include <cstdint>
#include <optional>

#include "constrain/grammar.h"

namespace dpserve::constrain {

// Digits of the integer part when a side is unbounded (past 2^53 JSON parsers lose precision).
inline constexpr int kJsonMaxIntegerDigits = 16;

struct NumberBound {
  double value = 0;
  bool exclusive = false;
};

// Decimal integers without leading zeros in [lo, hi] (absent: unbounded, up to
// kJsonMaxIntegerDigits digits). Throws dpserve::Error when the range is empty.
ExprId json_integer(Grammar& g, std::optional<int64_t> lo, std::optional<int64_t> hi);
ExprId json_integer_bounded(Grammar& g, std::optional<NumberBound> lo, std::optional<NumberBound> hi);

// JSON numbers; with bounds: integers in range plus decimals whose whole interval
// (k, k + 1) lies inside the bounds, no exponent (a subset, so every output is in range).
ExprId json_number(Grammar& g, std::optional<NumberBound> lo, std::optional<NumberBound> hi);

}  // namespace dpserve::constrain
