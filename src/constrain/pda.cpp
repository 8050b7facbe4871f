#include "constrain/pda.h"

#include "core/check.h"

namespace dpserve::constrain {

int32_t StackArena::push(int32_t parent, uint32_t rule, int32_t ret) {
  const uint64_t k = key(parent, rule, ret);
  auto [lo, hi] = index_.equal_range(k);
  for (auto it = lo; it != hi; ++it) {
    const Node& n = nodes_[size_t(it->second)];
    if (n.parent == parent && n.rule == rule && n.ret == ret) return it->second;
  }
  nodes_.push_back(Node{rule, ret, parent});
  const int32_t id = int32_t(nodes_.size() - 1);
  index_.emplace(k, id);
  return id;
}

void StackArena::rollback(size_t mark) {
  while (nodes_.size() > mark) {
    const Node& n = nodes_.back();
    const int32_t id = int32_t(nodes_.size() - 1);
    auto [lo, hi] = index_.equal_range(key(n.parent, n.rule, n.ret));
    for (auto it = lo; it != hi; ++it) {
      if (it->second == id) {
        index_.erase(it);
        break;
      }
    }
    nodes_.pop_back();
  }
}

void Pda::begin_set() {
  ++gen_;
  if (gen_ == 0) {  // wrapped: forget every stamp
    std::fill(seen_gen_.begin(), seen_gen_.end(), 0);
    gen_ = 1;
  }
  seen_count_ = 0;
  if (seen_.empty()) {
    seen_.resize(64);
    seen_gen_.assign(64, 0);
  }
}

bool Pda::visit(const Config& c) {
  if ((seen_count_ + 1) * 2 > seen_.size()) {
    std::vector<Config> old;
    for (size_t i = 0; i < seen_.size(); ++i)
      if (seen_gen_[i] == gen_) old.push_back(seen_[i]);
    seen_.assign(seen_.size() * 2, Config{});
    seen_gen_.assign(seen_.size(), 0);
    seen_count_ = 0;
    for (const Config& o : old) visit(o);
  }
  const size_t mask = seen_.size() - 1;
  for (size_t i = ConfigHash{}(c) & mask;; i = (i + 1) & mask) {
    if (seen_gen_[i] != gen_) {
      seen_gen_[i] = gen_;
      seen_[i] = c;
      ++seen_count_;
      return true;
    }
    if (seen_[i] == c) return false;
  }
}

void Pda::add_closure(StackArena& arena, Config c, ConfigSet& out) {
  work_.clear();
  work_.push_back(c);
  while (!work_.empty()) {
    const Config x = work_.back();
    work_.pop_back();
    if (!visit(x)) continue;
    const Automaton::Rule& r = a_.rule(x.rule);
    const uint8_t f = r.flags[size_t(x.state)];
    if (f & Automaton::kHasBytes) {
      out.configs.push_back(x);
      if (out.configs.size() > kMaxConfigs)
        fail("the grammar is too ambiguous: over {} parses are alive at once", kMaxConfigs);
    }
    if (f & Automaton::kHasCalls) {
      for (uint32_t k = r.call_begin[size_t(x.state)]; k < r.call_begin[size_t(x.state) + 1]; ++k) {
        const Automaton::Call& call = r.calls[k];
        // A call whose return point can only return again is a tail call: no frame needed, so
        // right recursion (lists, `x ::= "a" x | ""`) runs in constant stack.
        const bool tail = r.flags[size_t(call.target)] == Automaton::kAccepting;
        const int32_t stack = tail ? x.stack : arena.push(x.stack, x.rule, call.target);
        work_.push_back(Config{call.rule, a_.rule(call.rule).start, stack});
      }
    }
    if (f & Automaton::kAccepting) {
      if (x.stack == kBottom) {
        out.at_bottom_end = true;
      } else {
        const StackArena::Node& n = arena.node(x.stack);
        work_.push_back(Config{n.rule, n.ret, n.parent});
      }
    }
  }
}

void Pda::closure(StackArena& arena, Config c, ConfigSet& out) {
  begin_set();
  add_closure(arena, c, out);
}

void Pda::step(StackArena& arena, const ConfigSet& in, uint8_t b, ConfigSet& out) {
  out.clear();
  begin_set();
  for (const Config& c : in.configs) {
    const int32_t t = a_.rule(c.rule).step(c.state, b);
    if (t >= 0) add_closure(arena, Config{c.rule, t, c.stack}, out);
  }
}

void Pda::start(StackArena& arena, ConfigSet& out) {
  out.clear();
  closure(arena, Config{a_.root(), a_.rule(a_.root()).start, kBottom}, out);
}

}  // namespace dpserve::constrain
