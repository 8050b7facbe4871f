#include "constrain/reasoning_prefix.h"

#include <vector>

#include <fmt/format.h>

#include "constrain/harmony_grammar.h"
#include "core/check.h"

namespace dpserve::constrain {

ExprId text_until(Grammar& g, std::string_view stop) {
  DP_CHECK(!stop.empty());
  for (char c : stop) DP_CHECK(uint8_t(c) < 0x80, "text_until: the stop string must be ASCII");
  const size_t L = stop.size();
  // KMP: the state after reading byte c in state i (the longest prefix of `stop` ending there).
  std::vector<size_t> fail_at(L + 1, 0);
  for (size_t i = 1, k = 0; i < L; ++i) {
    while (k > 0 && stop[i] != stop[k]) k = fail_at[k];
    if (stop[i] == stop[k]) ++k;
    fail_at[i + 1] = k;
  }
  auto next = [&](size_t i, char c) {
    while (i > 0 && stop[i] != c) i = fail_at[i];
    return stop[i] == c ? i + 1 : 0;
  };
  const int32_t base = int32_t(g.num_rules());
  std::vector<int32_t> rules;
  for (size_t i = 0; i < L; ++i) rules.push_back(g.add_rule(fmt::format("until{}_{}", base, i)));
  for (size_t i = 0; i < L; ++i) {
    // Characters grouped by where they lead; every non-ASCII character restarts the match.
    std::vector<CodepointSet> to(L + 1);
    for (uint32_t c = 0; c < 0x80; ++c) to[next(i, char(c))].add(c);
    to[0].add(0x80, CodepointSet::kMax);
    std::vector<ExprId> alts;
    for (size_t k = 0; k <= L; ++k) {
      if (to[k].empty()) continue;
      const ExprId ch = g.chars(to[k]);
      alts.push_back(k == L ? ch : g.seq({ch, g.ref(rules[k])}));
    }
    g.set_body(rules[i], g.alt(std::move(alts)));
  }
  return g.ref(rules[0]);
}

ExprId open_think_rest(Grammar& g) { return g.seq({text_until(g, "</think>"), g.repeat(g.literal("\n"), 0, 2)}); }

void add_reasoning_prefix(Grammar& g, ReasoningPrefix prefix) {
  if (prefix == ReasoningPrefix::kNone) return;
  const int32_t answer = g.root();
  // Parentheses cannot appear in a GBNF rule name, so this never collides with a user's rule.
  const int32_t root = g.add_rule("(reasoning then answer)");
  const ExprId before = prefix == ReasoningPrefix::kHarmony
                            ? g.seq({harmony_side_messages(g), harmony_final_header(g)})
                            : open_think_rest(g);
  const ExprId after = prefix == ReasoningPrefix::kHarmony ? harmony_stop(g, "<|return|>") : g.empty();
  g.set_body(root, g.seq({before, g.ref(answer), after}));
  g.set_root(root);
}

}  // namespace dpserve::constrain
