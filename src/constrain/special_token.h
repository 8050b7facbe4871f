// How a grammar names a special token (gpt-oss's <|channel|>, Mistral's [TOOL_CALLS]): the bytes
// 0xFF, the token's text, 0xFE. No UTF-8 text holds 0xFE or 0xFF, so no text rule of any grammar can
// match them, and no run of text tokens can spell them (VocabIndex leaves out text tokens holding
// those bytes); only the special token itself, whose VocabIndex bytes are exactly this, can.
#pragma once

#include <string>
#include <string_view>

namespace dpserve::constrain {

inline constexpr char kSpecialOpen = '\xFF';
inline constexpr char kSpecialClose = '\xFE';

inline std::string special_token_spelling(std::string_view text) {
  std::string s;
  s.reserve(text.size() + 2);
  s += kSpecialOpen;
  s += text;
  s += kSpecialClose;
  return s;
}

}  // namespace dpserve::constrain
