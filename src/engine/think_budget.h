// A cap on a reasoning block's length (vLLM's thinking_token_budget, llama.cpp's reasoning budget,
// Anthropic's thinking.budget_tokens): once `budget` tokens have been written inside the block, the
// next tokens are forced (a message, then the closing tag) and the answer follows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dpserve {

// What the frontend resolved for one request: the tags as single token ids and where the prompt left them.
struct ThinkBudgetSpec {
  int32_t budget = -1;          // tokens of thinking allowed; -1: no cap (the rest unused)
  int32_t open_id = -1;         // the opening tag (<think>): counting starts after it
  int32_t close_id = -1;        // the closing tag (</think>): the model ending the block itself
  bool open_at_start = false;   // the prompt ends inside an opened block (its template wrote <think>)
  std::vector<int32_t> forced;  // what ends an exhausted block: a message's ids, then close_id last
  bool active() const { return budget >= 0; }
};

// One request's progress through its block, advanced by every output token on every rank of the
// group (so identical on all of them, as the sampler's stream is).
class ThinkBudget {
 public:
  ThinkBudget() = default;
  explicit ThinkBudget(ThinkBudgetSpec spec);

  // The token the next output position must be, or -1 when the model chooses.
  int32_t forced_token() const;
  // Tokens written inside the block so far (forced ones not counted).
  int64_t used() const { return used_; }
  void advance(int32_t token);

 private:
  enum class Phase : uint8_t { kOff, kBefore, kThinking, kForcing, kDone };
  ThinkBudgetSpec spec_;  // a copy: the state may move apart from the request
  Phase phase_ = Phase::kOff;
  int64_t used_ = 0;
  size_t forced_next_ = 0;  // kForcing: the index into spec_.forced of the next forced token
};

}  // namespace dpserve
