// The intersection of regular languages, for JSON Schema keywords that must all hold of one string
// (`pattern` beside `format`, as zod and Pydantic write them): each part is compiled alone to a DFA,
// the product of the DFAs is walked from the start, and its live states become rules of the target
// grammar whose moves are tail calls (constant stack at run time, see pda.cpp).
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "constrain/grammar.h"

namespace dpserve::constrain {

// An expression of `g` matching exactly the strings every grammar of `parts` matches. Each part's
// root must reference no rule (a regular expression compiled alone). Throws dpserve::Error when no
// string matches them all, or when the product needs over kMaxProductStates states.
ExprId intersect_regular(Grammar& g, const std::vector<const Grammar*>& parts, std::string_view name);

// A deterministic automaton given by its moves (a language no short expression writes, such as the
// decimal integers divisible by k): states are ids >= 0, step returns -1 where no move is.
struct ByteDfa {
  int32_t start = 0;
  std::function<int32_t(int32_t, uint8_t)> step;
  std::function<bool(int32_t)> accepting;
};

// As above, with `extra` automata intersected too.
ExprId intersect_regular(Grammar& g, const std::vector<const Grammar*>& parts, const std::vector<ByteDfa>& extra,
                         std::string_view name);

inline constexpr size_t kMaxProductStates = size_t(1) << 15;

}  // namespace dpserve::constrain
