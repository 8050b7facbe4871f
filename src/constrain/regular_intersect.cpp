#include "constrain/regular_intersect.h"

#include <map>
#include <memory>

#include <fmt/format.h>

#include "constrain/automaton.h"
#include "core/check.h"

namespace dpserve::constrain {

ExprId intersect_regular(Grammar& g, const std::vector<const Grammar*>& parts, std::string_view name) {
  return intersect_regular(g, parts, {}, name);
}

ExprId intersect_regular(Grammar& g, const std::vector<const Grammar*>& parts, const std::vector<ByteDfa>& extra,
                         std::string_view name) {
  DP_CHECK(!parts.empty() || !extra.empty());
  std::vector<std::shared_ptr<const Automaton>> automata;
  std::vector<ByteDfa> dfas;
  for (const Grammar* p : parts) {
    auto a = Automaton::build(*p);
    DP_CHECK(!a->rule(0).has_calls, "intersect_regular: a part references a rule");
    const Automaton::Rule* r = &a->rule(0);
    automata.push_back(std::move(a));
    dfas.push_back(ByteDfa{r->start, [r](int32_t s, uint8_t b) { return r->step(s, b); },
                           [r](int32_t s) { return (r->flags[size_t(s)] & Automaton::kAccepting) != 0; }});
  }
  for (const ByteDfa& d : extra) dfas.push_back(d);
  const size_t n = dfas.size();

  // Forward: the product states reachable from the start, and their moves grouped by target.
  using Key = std::vector<int32_t>;
  std::map<Key, int32_t> index;
  std::vector<Key> states;
  std::vector<std::map<int32_t, ByteSet>> moves;
  auto intern = [&](const Key& k) {
    auto [it, fresh] = index.emplace(k, int32_t(states.size()));
    if (fresh) {
      if (states.size() >= kMaxProductStates)
        fail("the constraint is too large to compile (its intersection needs over {} states)", kMaxProductStates);
      states.push_back(k);
      moves.emplace_back();
    }
    return it->second;
  };
  Key start(n);
  for (size_t i = 0; i < n; ++i) start[i] = dfas[i].start;
  intern(start);
  for (size_t s = 0; s < states.size(); ++s) {
    for (int b = 0; b < 256; ++b) {
      Key next(n);
      bool alive = true;
      for (size_t i = 0; i < n && alive; ++i) {
        next[i] = dfas[i].step(states[s][i], uint8_t(b));
        alive = next[i] >= 0;
      }
      if (!alive) continue;
      const int32_t t = intern(next);
      moves[s][t].set(uint8_t(b));
    }
  }
  std::vector<bool> accepting(states.size(), true);
  for (size_t s = 0; s < states.size(); ++s)
    for (size_t i = 0; i < n; ++i)
      if (!dfas[i].accepting(states[s][i])) accepting[s] = false;

  // Backward: only states from which an accepting one can be reached are kept.
  std::vector<bool> live = accepting;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t s = 0; s < states.size(); ++s) {
      if (live[s]) continue;
      for (const auto& [t, bytes] : moves[s])
        if (live[size_t(t)]) {
          live[s] = changed = true;
          break;
        }
    }
  }
  if (!live[0]) fail("no string matches all of them");

  // One rule per live state: accept here (when every part does), or read a byte and go on.
  std::vector<int32_t> rules(states.size(), -1);
  for (size_t s = 0; s < states.size(); ++s)
    if (live[s]) rules[s] = g.add_rule(fmt::format("{}#{}", name, s));
  for (size_t s = 0; s < states.size(); ++s) {
    if (!live[s]) continue;
    std::vector<ExprId> alts;
    if (accepting[s]) alts.push_back(g.empty());
    for (const auto& [t, bytes] : moves[s])
      if (live[size_t(t)]) alts.push_back(g.seq({g.bytes(bytes), g.ref(rules[size_t(t)])}));
    g.set_body(rules[s], g.alt(std::move(alts)));
  }
  return g.ref(rules[0]);
}

}  // namespace dpserve::constrain
