// For compiler tests: whether an automaton accepts a string as a whole output, run through the real
// Matcher over a vocabulary of the 256 single bytes and an EOS (id 256).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "constrain/automaton.h"
#include "constrain/matcher.h"
#include "constrain/token_mask_cache.h"
#include "constrain/vocab_index.h"

namespace dpserve::constrain::test {

inline std::shared_ptr<const VocabIndex> bytes_vocab() {
  static auto v = [] {
    std::vector<std::string> b;
    for (int i = 0; i < 256; ++i) b.push_back(std::string(1, char(i)));
    b.push_back("");
    std::vector<bool> text(257, true);
    text[256] = false;
    return std::make_shared<VocabIndex>(b, text, std::vector<int32_t>{256}, 257);
  }();
  return v;
}

// Is `s` a complete output of the automaton?
inline bool accepts(const std::shared_ptr<const Automaton>& a, const std::string& s) {
  Matcher m(std::make_shared<TokenMaskCache>(a, bytes_vocab()));
  for (char c : s)
    if (!m.accept(uint8_t(c))) return false;
  return m.accept(256);
}

}  // namespace dpserve::constrain::test
