#include "constrain/token_mask_cache.h"

#include "constrain/pda.h"

namespace dpserve::constrain {

TokenMaskCache::TokenMaskCache(std::shared_ptr<const Automaton> a, std::shared_ptr<const VocabIndex> v,
                               size_t max_bytes)
    : a_(std::move(a)), v_(std::move(v)), max_bytes_(max_bytes) {}

size_t TokenMaskCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

size_t TokenMaskCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t TokenMaskCache::entry_bytes(const Entry& e) {
  // The vectors' storage, the Entry, its shared_ptr control block and the map node.
  return e.accepted.capacity() * sizeof(uint64_t) + e.uncertain.capacity() * sizeof(int32_t) + 128;
}

std::shared_ptr<const TokenMaskCache::Entry> TokenMaskCache::get(uint32_t rule, int32_t state) {
  const uint64_t key = (uint64_t(rule) << 32) | uint32_t(state);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = map_.find(key); it != map_.end()) return it->second;
  }
  // Computed outside the lock: two threads may both compute a new entry, with the same result.
  const auto t0 = std::chrono::steady_clock::now();
  auto e = std::make_shared<const Entry>(compute(rule, state));
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(mu_);
  ++misses_;
  compute_seconds_ += dt;
  const size_t eb = entry_bytes(*e);
  if (map_.size() >= kMaxEntries || (bytes_ + eb > max_bytes_ && !map_.empty())) {
    map_.clear();
    bytes_ = 0;
  }
  auto [it, fresh] = map_.try_emplace(key, std::move(e));
  if (fresh) bytes_ += eb;
  return it->second;
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
    // Bytes on which a state loops back to itself (JSON string content, free text): a subtree
    // made only of those is accepted whole without stepping through it.
    std::vector<int32_t> loop_of(size_t(R.num_states()), -1);
    std::vector<ByteSet> loops;
    auto loop_set = [&](int32_t s) -> const ByteSet& {
      int32_t& k = loop_of[size_t(s)];
      if (k < 0) {
        ByteSet b;
        for (int c = 0; c < 256; ++c)
          if (R.step(s, uint8_t(c)) == s) b.set(uint8_t(c));
        k = int32_t(loops.size());
        loops.push_back(b);
      }
      return loops[size_t(k)];
    };
    const ByteSet* below = V.subtree_bytes.data();
    for (size_t i = 0; i < n;) {
      const size_t d = depth[i];
      const ByteSet& l = loop_set(st[d - 1]);
      if ((below[i] & ~l).empty()) {
        for (int32_t k = tb[i]; k < tb[end[i]]; ++k)
          e.accepted[size_t(toks[k]) >> 6] |= uint64_t(1) << (toks[k] & 63);
        i = size_t(end[i]);
        continue;
      }
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
  // "whatever called this rule". Most steps still move one configuration inside one rule, which
  // takes a table lookup; calls and returns go through the Pda.
  Pda pda(*a_);
  StackArena arena;
  std::vector<ConfigSet> lv(V.max_depth() + 1);
  std::vector<size_t> mark(V.max_depth() + 1, 0);
  lv[0].configs.push_back(Config{rule, state, kBottom});
  std::vector<std::vector<int32_t>> loop_of(a_->num_rules());
  std::vector<ByteSet> loops;
  auto loop_set = [&](const Config& c) -> const ByteSet& {
    const Automaton::Rule& r = a_->rule(c.rule);
    auto& idx = loop_of[c.rule];
    if (idx.empty()) idx.assign(size_t(r.num_states()), -1);
    int32_t& k = idx[size_t(c.state)];
    if (k < 0) {
      ByteSet b;
      for (int x = 0; x < 256; ++x)
        if (r.step(c.state, uint8_t(x)) == c.state) b.set(uint8_t(x));
      k = int32_t(loops.size());
      loops.push_back(b);
    }
    return loops[size_t(k)];
  };
  const ByteSet* below = V.subtree_bytes.data();
  for (size_t i = 0; i < n;) {
    const size_t d = depth[i];
    const ConfigSet& prev = lv[d - 1];
    ConfigSet& cs = lv[d];
    if (prev.configs.size() == 1) {
      const Config c = prev.configs[0];
      if ((below[i] & ~loop_set(c)).empty()) {
        for (int32_t k = tb[i]; k < tb[end[i]]; ++k)
          e.accepted[size_t(toks[k]) >> 6] |= uint64_t(1) << (toks[k] & 63);
        i = size_t(end[i]);
        continue;
      }
      const Automaton::Rule& r = a_->rule(c.rule);
      const int32_t t = r.step(c.state, byte[i]);
      if (t >= 0 && !(r.flags[size_t(t)] & (Automaton::kHasCalls | Automaton::kAccepting))) {
        cs.configs.assign(1, Config{c.rule, t, c.stack});
        cs.at_bottom_end = false;
        accept_node(i);
        inh[d] = inh[d - 1];
        mark[d] = mark[d - 1];
        ++i;
        continue;
      }
    }
    arena.rollback(mark[d - 1]);
    pda.step(arena, prev, byte[i], cs);
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
