// For parsers that read tags out of streamed text: how much of a delivery's end must be held back
// because it may still become a tag.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace dpserve {

// Length of the longest suffix of `s` that is a proper prefix of `tag` (text that may still become it).
inline size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace dpserve
