// The test oracle for token masks: a deliberately plain recognizer over the Grammar IR that shares
// no code with Automaton / Pda / TokenMaskCache / VocabIndex. Each rule is its own Thompson NFA
// (no inlining, no determinization, no byte classes, no tail calls); a configuration is an NFA
// state and a stack of return states; a string is a viable prefix when some configuration survives
// it (dead NFA states are pruned first, so a surviving configuration can always complete).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "constrain/grammar.h"

namespace dpserve::constrain::test {

class ReferenceRecognizer {
 public:
  struct State {
    std::set<std::pair<int, int>> configs;  // (NFA state, stack id)
    bool can_end = false;                   // the whole input may end here
    bool viable() const { return !configs.empty() || can_end; }
  };

  explicit ReferenceRecognizer(const Grammar& g) : g_(g) {
    for (size_t r = 0; r < g.num_rules(); ++r) {
      start_.push_back(0);
      final_.push_back(0);
    }
    for (size_t r = 0; r < g.num_rules(); ++r) {
      const int s = add(int(r)), f = add(int(r));
      start_[r] = s;
      final_[r] = f;
      const auto [a, b] = build(g.rule_body(int32_t(r)), int(r));
      eps_[size_t(s)].push_back(a);
      eps_[size_t(b)].push_back(f);
    }
    compute_live();
    stacks_.push_back({-1, -1});  // id 0: the empty stack
  }

  State start() {
    State st;
    close({start_[size_t(g_.root())], 0}, st);
    return st;
  }

  State step(const State& in, uint8_t b) {
    State out;
    for (const auto& [s, stack] : in.configs)
      for (const auto& [set, t] : bytes_[size_t(s)])
        if (set.test(b)) close({t, stack}, out);
    return out;
  }

  State run(State st, const std::string& bytes) {
    for (char c : bytes) {
      st = step(st, uint8_t(c));
      if (!st.viable()) break;
    }
    return st;
  }

 private:
  int add(int rule) {
    eps_.emplace_back();
    bytes_.emplace_back();
    calls_.emplace_back();
    rule_of_.push_back(rule);
    return int(eps_.size() - 1);
  }

  std::pair<int, int> build(ExprId id, int rule) {
    const Expr& e = g_.expr(id);
    const int a = add(rule), b = add(rule);
    switch (e.kind) {
      case ExprKind::kBytes:
        bytes_[size_t(a)].push_back({e.bytes, b});
        break;
      case ExprKind::kSeq: {
        int cur = a;
        for (ExprId k : e.kids) {
          const auto [x, y] = build(k, rule);
          eps_[size_t(cur)].push_back(x);
          cur = y;
        }
        eps_[size_t(cur)].push_back(b);
        break;
      }
      case ExprKind::kAlt:
        for (ExprId k : e.kids) {
          const auto [x, y] = build(k, rule);
          eps_[size_t(a)].push_back(x);
          eps_[size_t(y)].push_back(b);
        }
        break;
      case ExprKind::kRepeat: {
        int cur = a;
        const int copies = e.max < 0 ? e.min : e.max;
        for (int i = 0; i < copies; ++i) {
          if (i >= e.min) eps_[size_t(cur)].push_back(b);  // optional copies may stop here
          const auto [x, y] = build(e.kids[0], rule);
          eps_[size_t(cur)].push_back(x);
          cur = y;
        }
        if (e.max < 0) {  // then any number more
          const auto [x, y] = build(e.kids[0], rule);
          eps_[size_t(cur)].push_back(x);
          eps_[size_t(y)].push_back(cur);
        }
        eps_[size_t(cur)].push_back(b);
        break;
      }
      case ExprKind::kRef:
        calls_[size_t(a)].push_back({e.rule, b});
        break;
    }
    return {a, b};
  }

  // live: the state can still reach its rule's final state.
  void compute_live() {
    live_.assign(eps_.size(), false);
    productive_.assign(start_.size(), false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t s = 0; s < eps_.size(); ++s) {
        if (live_[s]) continue;
        bool ok = int(s) == final_[size_t(rule_of_[s])];
        for (int t : eps_[s]) ok = ok || live_[size_t(t)];
        for (const auto& [set, t] : bytes_[s]) ok = ok || live_[size_t(t)];
        for (const auto& [r, t] : calls_[s]) ok = ok || (productive_[size_t(r)] && live_[size_t(t)]);
        if (ok) {
          live_[s] = true;
          changed = true;
          for (size_t r = 0; r < start_.size(); ++r)
            if (start_[r] == int(s)) productive_[r] = true;
        }
      }
    }
  }

  int push(int stack, int ret) {
    auto [it, fresh] = stack_ids_.try_emplace({stack, ret}, int(stacks_.size()));
    if (fresh) stacks_.push_back({stack, ret});
    return it->second;
  }

  void close(std::pair<int, int> c0, State& out) {
    std::vector<std::pair<int, int>> work{c0};
    std::set<std::pair<int, int>> seen;
    while (!work.empty()) {
      const auto c = work.back();
      work.pop_back();
      const auto [s, stack] = c;
      if (!live_[size_t(s)] || !seen.insert(c).second) continue;
      if (!bytes_[size_t(s)].empty()) out.configs.insert(c);
      for (int t : eps_[size_t(s)]) work.push_back({t, stack});
      for (const auto& [r, ret] : calls_[size_t(s)])
        if (productive_[size_t(r)] && live_[size_t(ret)]) work.push_back({start_[size_t(r)], push(stack, ret)});
      if (s == final_[size_t(rule_of_[size_t(s)])]) {
        if (stack == 0) {
          out.can_end = true;
        } else {
          const auto [parent, ret] = stacks_[size_t(stack)];
          work.push_back({ret, parent});
        }
      }
    }
  }

  const Grammar& g_;
  std::vector<int> start_, final_, rule_of_;
  std::vector<std::vector<int>> eps_;
  std::vector<std::vector<std::pair<ByteSet, int>>> bytes_;
  std::vector<std::vector<std::pair<int, int>>> calls_;
  std::vector<bool> live_, productive_;
  std::vector<std::pair<int, int>> stacks_;  // id -> (parent id, return state)
  std::map<std::pair<int, int>, int> stack_ids_;
};

}  // namespace dpserve::constrain::test
