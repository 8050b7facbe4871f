// Grammar -> Automaton: inlining of non-recursive rules, Thompson NFA per surviving rule, subset
// construction over byte classes and rule calls, then the whole-grammar checks (productive rules,
// dead states, left recursion).
#include <algorithm>
#include <functional>
#include <unordered_map>

#include <fmt/format.h>

#include "constrain/automaton.h"
#include "core/check.h"

namespace dpserve::constrain {
namespace {

// A rule whose expanded body is larger than this stays a call instead of being copied into callers.
constexpr uint64_t kInlineBudget = 20000;
// Rules up to this size are copied at every use; larger ones at their first use only and called
// from the others, so a sub-schema repeated by maxItems or by optional-property chains is built
// once (and its states share token-mask cache entries across uses).
constexpr uint64_t kCopyEverywhere = 256;
constexpr size_t kMaxDfaStates = size_t(1) << 18;  // per rule
// What one whole build may spend, over all its rules. NFA states cost ~120 bytes each. Each DFA
// state keeps the set of NFA states it stands for, and nested bounded repetitions make both the
// number and the size of those sets grow as a power of the bounds while each rule stays under
// kMaxDfaStates: the regex ((a{1,20}){1,20}){1,20} needed 32M set entries (280 MB), and at 30 it
// held 3.4 GB for 23 s. The largest constraints of the tests and corpora (a 2000-property schema,
// ajv's schema corpus) need 96k NFA states in a rule, 42k set entries and 0.3M closure steps;
// these caps are 10-100x that: a refused build has spent at most ~150 MB and well under a second.
// The fuzz targets lower them (Automaton::work_caps_shift; a step costs ~40x more under ASan, and the
// caps must still end a build within libFuzzer's timeout), as they lower the chat template caps.
uint64_t max_nfa_states() { return uint64_t(1) << (20 - Automaton::work_caps_shift); }
uint64_t max_set_entries() { return uint64_t(1) << (22 - Automaton::work_caps_shift); }
uint64_t max_closure_steps() { return uint64_t(1) << (26 - Automaton::work_caps_shift); }

struct Nfa {
  struct State {
    std::vector<int32_t> eps;
    std::vector<std::pair<int32_t, int32_t>> bytes;  // (byte set index, target)
    std::vector<std::pair<int32_t, int32_t>> calls;  // (grammar rule, target)
  };
  std::vector<State> st;
  std::vector<ByteSet> sets;
  int32_t start = 0, final = 0;
  uint64_t* built = nullptr;  // NFA states of the whole build so far (max_nfa_states)

  int32_t add() {
    if (++*built > max_nfa_states())
      fail("the constraint is too large to compile (over {} automaton states)", max_nfa_states());
    st.emplace_back();
    return int32_t(st.size() - 1);
  }
  int32_t set_index(const ByteSet& s) {
    for (size_t i = sets.size(); i-- > 0;)
      if (sets[i] == s) return int32_t(i);
    sets.push_back(s);
    return int32_t(sets.size() - 1);
  }
};

struct VecHash {
  size_t operator()(const std::vector<int32_t>& v) const {
    uint64_t h = 1469598103934665603ull;
    for (int32_t x : v) h = (h ^ uint32_t(x)) * 1099511628211ull;
    return size_t(h);
  }
};

}  // namespace

class AutomatonBuilder {
 public:
  explicit AutomatonBuilder(const Grammar& g) : g_(g) {}

  std::shared_ptr<const Automaton> run() {
    if (g_.root() < 0) fail("the grammar has no root rule");
    for (size_t r = 0; r < g_.num_rules(); ++r) {
      if (g_.rule_body(int32_t(r)) < 0) fail("rule '{}' is used but never defined", g_.rule_name(int32_t(r)));
    }
    find_recursive_rules();
    copied_.assign(g_.num_rules(), false);
    auto a = std::make_shared<Automaton>();
    // Rules become automaton rules in the order they are first called; the root is rule 0.
    index_of_.assign(g_.num_rules(), -1);
    order_.push_back(g_.root());
    index_of_[size_t(g_.root())] = 0;
    for (size_t i = 0; i < order_.size(); ++i) a->rules_.push_back(build_rule(order_[i]));
    check_and_trim(*a);
    a->finish();
    return a;
  }

 private:
  // Tarjan's SCCs over the rule-call graph: a rule in a cycle (or calling itself) is recursive.
  void find_recursive_rules() {
    const size_t n = g_.num_rules();
    std::vector<std::vector<int32_t>> callees(n);
    for (size_t r = 0; r < n; ++r) collect_refs(g_.rule_body(int32_t(r)), callees[r]);
    recursive_.assign(n, false);
    std::vector<int32_t> index(n, -1), low(n, 0), stack;
    std::vector<bool> on(n, false);
    int32_t counter = 0;
    // Iterative Tarjan (GBNF grammars may be deep).
    struct Frame {
      int32_t v;
      size_t next;
    };
    for (size_t s = 0; s < n; ++s) {
      if (index[s] >= 0) continue;
      std::vector<Frame> work{{int32_t(s), 0}};
      index[s] = low[s] = counter++;
      stack.push_back(int32_t(s));
      on[s] = true;
      while (!work.empty()) {
        Frame& f = work.back();
        const auto& cs = callees[size_t(f.v)];
        if (f.next < cs.size()) {
          const int32_t w = cs[f.next++];
          if (w == f.v) recursive_[size_t(w)] = true;
          if (index[size_t(w)] < 0) {
            index[size_t(w)] = low[size_t(w)] = counter++;
            stack.push_back(w);
            on[size_t(w)] = true;
            work.push_back({w, 0});
          } else if (on[size_t(w)]) {
            low[size_t(f.v)] = std::min(low[size_t(f.v)], index[size_t(w)]);
          }
          continue;
        }
        const int32_t v = f.v;
        work.pop_back();
        if (!work.empty()) low[size_t(work.back().v)] = std::min(low[size_t(work.back().v)], low[size_t(v)]);
        if (low[size_t(v)] == index[size_t(v)]) {
          std::vector<int32_t> comp;
          int32_t w;
          do {
            w = stack.back();
            stack.pop_back();
            on[size_t(w)] = false;
            comp.push_back(w);
          } while (w != v);
          if (comp.size() > 1)
            for (int32_t x : comp) recursive_[size_t(x)] = true;
        }
      }
    }
  }

  void collect_refs(ExprId e, std::vector<int32_t>& out) const {
    std::vector<ExprId> work{e};
    std::vector<bool> seen(g_.num_exprs(), false);
    while (!work.empty()) {
      const ExprId x = work.back();
      work.pop_back();
      if (seen[size_t(x)]) continue;
      seen[size_t(x)] = true;
      const Expr& ex = g_.expr(x);
      if (ex.kind == ExprKind::kRef) out.push_back(ex.rule);
      for (ExprId k : ex.kids) work.push_back(k);
    }
  }

  // Expanded size of an expression with inlinable calls substituted (saturating).
  uint64_t size_of(ExprId e) {
    if (auto it = size_memo_.find(e); it != size_memo_.end()) return it->second;
    const Expr& ex = g_.expr(e);
    uint64_t s = 1;
    auto add = [&](uint64_t v) { s = std::min<uint64_t>(s + v, uint64_t(1) << 40); };
    switch (ex.kind) {
      case ExprKind::kBytes:
        break;
      case ExprKind::kSeq:
      case ExprKind::kAlt:
        for (ExprId k : ex.kids) add(size_of(k));
        break;
      case ExprKind::kRepeat: {
        const uint64_t copies = ex.max < 0 ? uint64_t(ex.min) + 1 : uint64_t(std::max(ex.max, 1));
        add(std::min<uint64_t>(size_of(ex.kids[0]) * copies, uint64_t(1) << 40));
        break;
      }
      case ExprKind::kRef:
        if (inlinable(ex.rule)) add(size_of(g_.rule_body(ex.rule)));
        break;
    }
    size_memo_[e] = s;
    return s;
  }

  bool inlinable(int32_t rule) {
    if (recursive_[size_t(rule)] || rule == g_.root()) return false;
    return size_of(g_.rule_body(rule)) <= kInlineBudget;
  }

  struct Frag {
    int32_t start, end;
  };

  Frag build_expr(Nfa& nfa, ExprId e, int depth) {
    if (depth > 2000) fail("the constraint nests too deeply to compile");
    const Expr& ex = g_.expr(e);
    switch (ex.kind) {
      case ExprKind::kBytes: {
        const int32_t s = nfa.add(), t = nfa.add();
        nfa.st[size_t(s)].bytes.push_back({nfa.set_index(ex.bytes), t});
        return {s, t};
      }
      case ExprKind::kSeq: {
        if (ex.kids.empty()) {
          const int32_t s = nfa.add();
          return {s, s};
        }
        Frag f = build_expr(nfa, ex.kids[0], depth + 1);
        int32_t cur = f.end;
        for (size_t i = 1; i < ex.kids.size(); ++i) {
          const Frag k = build_expr(nfa, ex.kids[i], depth + 1);
          nfa.st[size_t(cur)].eps.push_back(k.start);
          cur = k.end;
        }
        return {f.start, cur};
      }
      case ExprKind::kAlt: {
        const int32_t s = nfa.add(), t = nfa.add();
        for (ExprId k : ex.kids) {
          const Frag f = build_expr(nfa, k, depth + 1);
          nfa.st[size_t(s)].eps.push_back(f.start);
          nfa.st[size_t(f.end)].eps.push_back(t);
        }
        return {s, t};
      }
      case ExprKind::kRepeat: {
        const int32_t s = nfa.add();
        int32_t cur = s;
        for (int32_t i = 0; i < ex.min; ++i) {
          const Frag f = build_expr(nfa, ex.kids[0], depth + 1);
          nfa.st[size_t(cur)].eps.push_back(f.start);
          cur = f.end;
        }
        if (ex.max < 0) {
          const int32_t loop = nfa.add();
          nfa.st[size_t(cur)].eps.push_back(loop);
          const Frag f = build_expr(nfa, ex.kids[0], depth + 1);
          nfa.st[size_t(loop)].eps.push_back(f.start);
          nfa.st[size_t(f.end)].eps.push_back(loop);
          return {s, loop};
        }
        const int32_t t = nfa.add();
        for (int32_t i = ex.min; i < ex.max; ++i) {
          nfa.st[size_t(cur)].eps.push_back(t);
          const Frag f = build_expr(nfa, ex.kids[0], depth + 1);
          nfa.st[size_t(cur)].eps.push_back(f.start);
          cur = f.end;
        }
        nfa.st[size_t(cur)].eps.push_back(t);
        return {s, t};
      }
      case ExprKind::kRef: {
        if (inlinable(ex.rule) && (size_of(g_.rule_body(ex.rule)) <= kCopyEverywhere || !copied_[size_t(ex.rule)])) {
          copied_[size_t(ex.rule)] = true;
          return build_expr(nfa, g_.rule_body(ex.rule), depth + 1);
        }
        if (index_of_[size_t(ex.rule)] < 0) {
          index_of_[size_t(ex.rule)] = int32_t(order_.size());
          order_.push_back(ex.rule);
        }
        const int32_t s = nfa.add(), t = nfa.add();
        nfa.st[size_t(s)].calls.push_back({index_of_[size_t(ex.rule)], t});
        return {s, t};
      }
    }
    DP_CHECK(false, "unknown expression kind");
    return {0, 0};
  }

  Automaton::Rule build_rule(int32_t grule) {
    Nfa nfa;
    nfa.built = &nfa_states_;
    const Frag f = build_expr(nfa, g_.rule_body(grule), 0);
    nfa.start = f.start;
    nfa.final = f.end;

    Automaton::Rule r;
    r.name = g_.rule_name(grule);
    // Byte classes: refine {all bytes} by every byte set the rule uses.
    uint32_t n_classes = 1;
    std::array<uint8_t, 256> cls{};
    for (const ByteSet& s : nfa.sets) {
      std::vector<int32_t> in(n_classes, -1), out(n_classes, -1);
      uint32_t nn = 0;
      std::array<uint8_t, 256> next{};
      for (int b = 0; b < 256; ++b) {
        int32_t& slot = s.test(uint8_t(b)) ? in[cls[size_t(b)]] : out[cls[size_t(b)]];
        if (slot < 0) slot = int32_t(nn++);
        next[size_t(b)] = uint8_t(slot);
      }
      cls = next;
      n_classes = nn;
    }
    r.n_classes = n_classes;
    r.byte_class = cls;
    std::vector<std::vector<uint32_t>> classes_of_set(nfa.sets.size());
    for (size_t i = 0; i < nfa.sets.size(); ++i) {
      std::vector<bool> seen(n_classes, false);
      for (int b = 0; b < 256; ++b) {
        if (nfa.sets[i].test(uint8_t(b)) && !seen[cls[size_t(b)]]) {
          seen[cls[size_t(b)]] = true;
          classes_of_set[i].push_back(cls[size_t(b)]);
        }
      }
    }

    // Subset construction; a DFA state is the set of "important" NFA states (those with moves, and
    // the final state) in an epsilon closure.
    std::vector<uint32_t> mark(nfa.st.size(), 0);
    uint32_t gen = 0;
    std::vector<int32_t> work;
    auto closure = [&](const std::vector<int32_t>& seeds) {
      ++gen;
      std::vector<int32_t> out;
      work.assign(seeds.begin(), seeds.end());
      while (!work.empty()) {
        const int32_t x = work.back();
        work.pop_back();
        if (mark[size_t(x)] == gen) continue;
        mark[size_t(x)] = gen;
        if (++closure_steps_ > max_closure_steps())
          fail("the constraint is too large to compile (over {} automaton construction steps; nested repetition "
               "bounds multiply)",
               max_closure_steps());
        const Nfa::State& s = nfa.st[size_t(x)];
        if (!s.bytes.empty() || !s.calls.empty() || x == nfa.final) out.push_back(x);
        for (int32_t e : s.eps) work.push_back(e);
      }
      std::sort(out.begin(), out.end());
      return out;
    };
    std::unordered_map<std::vector<int32_t>, int32_t, VecHash> ids;
    std::vector<std::vector<int32_t>> sets;
    auto intern = [&](std::vector<int32_t> key) {
      auto [it, fresh] = ids.try_emplace(key, int32_t(sets.size()));
      if (fresh) {
        if (sets.size() >= kMaxDfaStates)
          fail("the constraint is too large to compile (rule '{}' needs over {} automaton states)", r.name,
               kMaxDfaStates);
        set_entries_ += key.size();
        if (set_entries_ > max_set_entries())
          fail("the constraint is too large to compile (its automaton states would hold over {} entries; nested "
               "repetition bounds multiply)",
               max_set_entries());
        sets.push_back(std::move(key));
      }
      return it->second;
    };
    r.start = intern(closure({nfa.start}));
    std::vector<std::vector<int32_t>> buckets(n_classes);
    std::vector<std::pair<int32_t, int32_t>> calls;
    for (size_t d = 0; d < sets.size(); ++d) {
      for (auto& b : buckets) b.clear();
      calls.clear();
      bool accepting = false;
      for (int32_t x : sets[d]) {
        if (x == nfa.final) accepting = true;
        for (auto [si, t] : nfa.st[size_t(x)].bytes)
          for (uint32_t c : classes_of_set[size_t(si)]) buckets[c].push_back(t);
        for (auto [rule, t] : nfa.st[size_t(x)].calls) calls.push_back({rule, t});
      }
      r.next.resize((d + 1) * n_classes, -1);
      // Classes with the same targets (all letters of a string, say) share one closure.
      for (uint32_t c = 0; c < n_classes; ++c) {
        if (buckets[c].empty()) continue;
        int32_t to = -1;
        for (uint32_t p = 0; p < c && to < 0; ++p)
          if (r.next[d * n_classes + p] >= 0 && buckets[p] == buckets[c]) to = r.next[d * n_classes + p];
        if (to < 0) to = intern(closure(buckets[c]));
        r.next[d * n_classes + c] = to;  // intern may grow `sets` but not `r.next` rows already made
      }
      std::sort(calls.begin(), calls.end());
      r.call_begin.push_back(uint32_t(r.calls.size()));
      for (size_t i = 0; i < calls.size();) {
        std::vector<int32_t> targets;
        size_t j = i;
        for (; j < calls.size() && calls[j].first == calls[i].first; ++j) targets.push_back(calls[j].second);
        r.calls.push_back({uint32_t(calls[i].first), intern(closure(targets))});
        i = j;
      }
      r.flags.push_back(accepting ? Automaton::kAccepting : 0);
    }
    r.call_begin.push_back(uint32_t(r.calls.size()));
    return r;
  }

  // Drops states that can never reach the end of their rule (so every state the run time meets can
  // still complete, and a mask is never empty), then refuses grammars that accept nothing or are
  // left-recursive (their closure would never end).
  void check_and_trim(Automaton& a) {
    const uint32_t n = a.num_rules();
    std::vector<std::vector<uint8_t>> live(n);
    std::vector<bool> productive(n, false);
    for (uint32_t r = 0; r < n; ++r) live[r].assign(a.rules_[r].flags.size(), 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t ri = 0; ri < n; ++ri) {
        Automaton::Rule& r = a.rules_[ri];
        for (int32_t s = r.num_states() - 1; s >= 0; --s) {
          if (live[ri][size_t(s)]) continue;
          bool ok = r.flags[size_t(s)] & Automaton::kAccepting;
          for (uint32_t c = 0; c < r.n_classes && !ok; ++c) {
            const int32_t t = r.next[size_t(s) * r.n_classes + c];
            ok = t >= 0 && live[ri][size_t(t)];
          }
          for (uint32_t k = r.call_begin[size_t(s)]; k < r.call_begin[size_t(s) + 1] && !ok; ++k)
            ok = productive[r.calls[k].rule] && live[ri][size_t(r.calls[k].target)];
          if (ok) {
            live[ri][size_t(s)] = 1;
            changed = true;
            if (s == r.start) productive[ri] = true;
          }
        }
      }
    }
    if (!productive[0]) fail("the constraint can never be satisfied (no string matches it)");
    for (uint32_t ri = 0; ri < n; ++ri) {
      Automaton::Rule& r = a.rules_[ri];
      for (int32_t s = 0; s < r.num_states(); ++s) {
        for (uint32_t c = 0; c < r.n_classes; ++c) {
          int32_t& t = r.next[size_t(s) * r.n_classes + c];
          if (t >= 0 && !live[ri][size_t(t)]) t = -1;
        }
      }
      std::vector<Automaton::Call> calls;
      std::vector<uint32_t> begin;
      for (int32_t s = 0; s < r.num_states(); ++s) {
        begin.push_back(uint32_t(calls.size()));
        for (uint32_t k = r.call_begin[size_t(s)]; k < r.call_begin[size_t(s) + 1]; ++k) {
          const auto& c = r.calls[k];
          if (productive[c.rule] && live[ri][size_t(c.target)]) calls.push_back(c);
        }
      }
      begin.push_back(uint32_t(calls.size()));
      r.calls = std::move(calls);
      r.call_begin = std::move(begin);
    }

    // Nullable rules (can end without reading a byte).
    std::vector<bool> nullable(n, false);
    auto reach_without_bytes = [&](uint32_t ri, const std::function<void(const Automaton::Call&)>& on_call) {
      const Automaton::Rule& r = a.rules_[ri];
      std::vector<bool> seen(size_t(r.num_states()), false);
      std::vector<int32_t> work{r.start};
      bool ends = false;
      while (!work.empty()) {
        const int32_t s = work.back();
        work.pop_back();
        if (seen[size_t(s)]) continue;
        seen[size_t(s)] = true;
        if (r.flags[size_t(s)] & Automaton::kAccepting) ends = true;
        for (uint32_t k = r.call_begin[size_t(s)]; k < r.call_begin[size_t(s) + 1]; ++k) {
          on_call(r.calls[k]);
          if (nullable[r.calls[k].rule]) work.push_back(r.calls[k].target);
        }
      }
      return ends;
    };
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t ri = 0; ri < n; ++ri) {
        if (!nullable[ri] && reach_without_bytes(ri, [](const Automaton::Call&) {})) {
          nullable[ri] = true;
          changed = true;
        }
      }
    }
    // Left recursion: a rule that can call itself before reading a byte.
    std::vector<std::vector<uint32_t>> left_calls(n);
    for (uint32_t ri = 0; ri < n; ++ri)
      reach_without_bytes(ri, [&](const Automaton::Call& c) { left_calls[ri].push_back(c.rule); });
    std::vector<uint8_t> color(n, 0);
    std::function<void(uint32_t)> visit = [&](uint32_t v) {
      color[v] = 1;
      for (uint32_t w : left_calls[v]) {
        if (color[w] == 1) fail("rule '{}' is left-recursive (it can reach itself without reading input)", a.rules_[w].name);
        if (color[w] == 0) visit(w);
      }
      color[v] = 2;
    };
    for (uint32_t ri = 0; ri < n; ++ri)
      if (color[ri] == 0) visit(ri);
  }

  const Grammar& g_;
  std::vector<bool> recursive_;
  std::vector<bool> copied_;  // inlined somewhere already
  std::unordered_map<ExprId, uint64_t> size_memo_;
  // Spent by the whole build: max_nfa_states, max_closure_steps, max_set_entries.
  uint64_t nfa_states_ = 0, closure_steps_ = 0, set_entries_ = 0;
  std::vector<int32_t> index_of_;  // grammar rule -> automaton rule, -1: not (yet) a rule of its own
  std::vector<int32_t> order_;     // automaton rule -> grammar rule
};

std::shared_ptr<const Automaton> Automaton::build(const Grammar& g) { return AutomatonBuilder(g).run(); }

}  // namespace dpserve::constrain
