#include "constrain/token_mask_cache.h"

#include "constrain/pda.h"

namespace dpserve::constrain {

TokenMaskCache::TokenMaskCache(std::shared_ptr<const Automaton> a, std::shared_ptr<const VocabIndex> v)
    : a_(std::move(a)), v_(std::move(v)) {}

size_t TokenMaskCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

std::shared_ptr<const TokenMaskCache::Entry> TokenMaskCache::get(uint32_t rule, int32_t state) {
  const uint64_t key = (uint64_t(rule) << 32) | uint32_t(state);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = map_.find(key); it != map_.end()) return it->second;
  }
  // Computed outside the lock: two threads may both compute a new entry, with the same result.
  auto e = std::make_shared<const Entry>(compute(rule, state));
  std::lock_guard<std::mutex> lock(mu_);
  ++misses_;
  if (map_.size() >= kMaxEntries) map_.clear();
  return map_.try_emplace(key, std::move(e)).first->second;
}

TokenMaskCache::Entry TokenMaskCache::compute(uint32_t rule, int32_t state) const {
  const VocabIndex& V = *v_;
  const Automaton::Rule& R = a_->rule(rule);
  Entry e;
  e.accepted.assign(V.mask_words(), 0);
  const size_t n = V.num_nodes();
  const uint8_t* byte = V.node_byte.data();
  const uint16_t* depth = V.node_depth.data();
  const int32_t* end = V.node_end.data();
  const int32_t* tb = V.tok_begin.data();
  const int32_t* toks = V.tokens.data();
  auto accept_node = [&](size_t i) {
    for (int32_t k = tb[i]; k < tb[i + 1]; ++k) e.accepted[size_t(toks[k]) >> 6] |= uint64_t(1) << (toks[k] & 63);
  };
  auto uncertain = [&](int32_t from, int32_t to) { e.uncertain.insert(e.uncertain.end(), toks + from, toks + to); };
  // inh[d]: the rule could have ended after d bytes (d >= 1) on the path to the current node, so
  // longer tokens below depend on what follows the rule. (Ending after 0 bytes is the caller's
  // business: the run time holds those continuations as configurations of their own.)
  std::vector<uint8_t> inh(V.max_depth() + 1, 0);

  if (!R.has_calls) {
    // A plain DFA: one state per depth.
    std::vector<int32_t> st(V.max_depth() + 1, -1);
    st[0] = state;
    for (size_t i = 0; i < n;) {
      const size_t d = depth[i];
      const int32_t s = R.step(st[d - 1], byte[i]);
      if (s < 0) {
        if (inh[d - 1]) uncertain(tb[i], tb[end[i]]);
        i = size_t(end[i]);
        continue;
      }
      accept_node(i);
      const uint8_t f = R.flags[size_t(s)];
      inh[d] = inh[d - 1] | (f & Automaton::kAccepting);
      if (!(f & Automaton::kHasBytes)) {
        if (inh[d]) uncertain(tb[i + 1], tb[end[i]]);
        i = size_t(end[i]);
        continue;
      }
      st[d] = s;
      ++i;
    }
    return e;
  }

  // With calls: a configuration set per depth over a scratch stack arena whose bottom stands for
  // "whatever called this rule".
  Pda pda(*a_);
  StackArena arena;
  std::vector<ConfigSet> lv(V.max_depth() + 1);
  std::vector<size_t> mark(V.max_depth() + 1, 0);
  lv[0].configs.push_back(Config{rule, state, kBottom});
  for (size_t i = 0; i < n;) {
    const size_t d = depth[i];
    arena.rollback(mark[d - 1]);
    pda.step(arena, lv[d - 1], byte[i], lv[d]);
    const ConfigSet& cs = lv[d];
    if (cs.dead()) {
      if (inh[d - 1]) uncertain(tb[i], tb[end[i]]);
      i = size_t(end[i]);
      continue;
    }
    accept_node(i);
    inh[d] = inh[d - 1] | uint8_t(cs.at_bottom_end);
    if (cs.configs.empty()) {
      if (inh[d]) uncertain(tb[i + 1], tb[end[i]]);
      i = size_t(end[i]);
      continue;
    }
    mark[d] = arena.mark();
    ++i;
  }
  return e;
}

}  // namespace dpserve::constrain
