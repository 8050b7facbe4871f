// Chooses the DP group of each new request (SGLang's --load-balance-method).
// Loads are exact: rank 0 counts every request it sends and every finish the
// group leaders report, including requests sent earlier in the same step.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace dpserve {

enum class LoadBalanceMethod { kRoundRobin, kShortestQueue, kLeastTokens };

const char* to_string(LoadBalanceMethod m);  // "round_robin" | "shortest_queue" | "least_tokens"

class Router {
 public:
  Router(int n_groups, LoadBalanceMethod method);

  // Picks a group for a request of `tokens` prompt tokens and counts it there at once. `prefer`, a
  // valid group, is taken as it is (choices of one prompt follow the first to share its cached prefix).
  int assign(uint64_t id, int64_t tokens, int prefer = -1);
  void on_token(uint64_t id);     // one more token in flight for that request
  void on_finished(uint64_t id);  // the request left its group

  int64_t requests(int g) const { return requests_[size_t(g)]; }
  int64_t tokens(int g) const { return tokens_[size_t(g)]; }
  int n_groups() const { return int(requests_.size()); }

 private:
  LoadBalanceMethod method_;
  int next_ = 0;
  std::vector<int64_t> requests_, tokens_;
  struct Entry {
    int group;
    int64_t tokens;
  };
  std::unordered_map<uint64_t, Entry> live_;
};

}  // namespace dpserve
