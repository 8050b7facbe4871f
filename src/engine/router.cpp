#include "engine/router.h"

#include "core/check.h"

namespace dpserve {

const char* to_string(LoadBalanceMethod m) {
  switch (m) {
    case LoadBalanceMethod::kRoundRobin: return "round_robin";
    case LoadBalanceMethod::kShortestQueue: return "shortest_queue";
    case LoadBalanceMethod::kLeastTokens: return "least_tokens";
  }
  return "?";
}

Router::Router(int n_groups, LoadBalanceMethod method)
    : method_(method), requests_(size_t(n_groups), 0), tokens_(size_t(n_groups), 0) {
  DP_CHECK(n_groups >= 1);
}

int Router::assign(uint64_t id, int64_t tokens, int prefer) {
  const int n = n_groups();
  int g = 0;
  if (prefer >= 0 && prefer < n) {
    g = prefer;
  } else if (method_ == LoadBalanceMethod::kRoundRobin) {
    g = next_;
    next_ = (next_ + 1) % n;
  } else {
    // Least loaded; ties go to the group after the last one chosen, so equal loads rotate.
    const auto& load = method_ == LoadBalanceMethod::kShortestQueue ? requests_ : tokens_;
    g = next_;
    for (int k = 1; k < n; ++k) {
      int c = (next_ + k) % n;
      if (load[size_t(c)] < load[size_t(g)]) g = c;
    }
    next_ = (g + 1) % n;
  }
  requests_[size_t(g)] += 1;
  tokens_[size_t(g)] += tokens;
  live_[id] = Entry{g, tokens};
  return g;
}

void Router::on_token(uint64_t id) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  ++it->second.tokens;
  ++tokens_[size_t(it->second.group)];
}

void Router::on_finished(uint64_t id) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  requests_[size_t(it->second.group)] -= 1;
  tokens_[size_t(it->second.group)] -= it->second.tokens;
  live_.erase(it);
}

}  // namespace dpserve
