// The thinking budget's state machine, against sequences written out by hand from the rule the peers
// document (llama.cpp's --reasoning-budget, vLLM's thinking_token_budget): count the tokens after the
// opening tag; when `budget` of them are out, force the message and the closing tag; a block the model
// closes itself ends the count; nothing is forced outside a block.
#include <gtest/gtest.h>

#include <vector>

#include "engine/think_budget.h"

namespace dpserve {
namespace {

constexpr int32_t kOpen = 100, kClose = 101, kMsgA = 7, kMsgB = 8;

ThinkBudgetSpec spec(int32_t budget, bool open_at_start, std::vector<int32_t> message = {}) {
  ThinkBudgetSpec s{budget, kOpen, kClose, open_at_start, std::move(message)};
  s.forced.push_back(kClose);
  return s;
}

// Runs the model's choices through the budget: where a token is forced, the forced one is output
// instead (as the engine does); returns the output.
std::vector<int32_t> run(const ThinkBudgetSpec& s, const std::vector<int32_t>& model) {
  ThinkBudget b(s);
  std::vector<int32_t> out;
  for (int32_t want : model) {
    const int32_t f = b.forced_token();
    const int32_t tok = f >= 0 ? f : want;
    out.push_back(tok);
    b.advance(tok);
  }
  return out;
}

TEST(ThinkBudget, AnOpenedBlockIsClosedAfterBudgetTokens) {
  // Prompt ended with <think>: three thinking tokens, then </think> replaces the model's fourth.
  EXPECT_EQ(run(spec(3, true), {1, 2, 3, 4, 5, 6}), (std::vector<int32_t>{1, 2, 3, kClose, 5, 6}));
}

TEST(ThinkBudget, TheMessageComesBeforeTheClosingTag) {
  EXPECT_EQ(run(spec(2, true, {kMsgA, kMsgB}), {1, 2, 3, 4, 5, 6}),
            (std::vector<int32_t>{1, 2, kMsgA, kMsgB, kClose, 6}));
}

TEST(ThinkBudget, ZeroClosesAtOnce) {
  EXPECT_EQ(run(spec(0, true), {1, 2}), (std::vector<int32_t>{kClose, 2}));
  // A block the model opens itself: the tag goes out, then the close.
  EXPECT_EQ(run(spec(0, false), {1, kOpen, 2, 3}), (std::vector<int32_t>{1, kOpen, kClose, 3}));
}

TEST(ThinkBudget, CountingStartsAtTheModelsOpeningTag) {
  // Two tokens before the block are not thinking; the block then gets its two.
  EXPECT_EQ(run(spec(2, false), {1, 2, kOpen, 3, 4, 5, 6}), (std::vector<int32_t>{1, 2, kOpen, 3, 4, kClose, 6}));
}

TEST(ThinkBudget, ABlockClosedInTimeIsLeftAlone) {
  // Closed after two of five allowed tokens; later tags are the answer's text, never counted.
  EXPECT_EQ(run(spec(5, true), {1, 2, kClose, 3, kOpen, 4, 5, 6, 7, 8, 9}),
            (std::vector<int32_t>{1, 2, kClose, 3, kOpen, 4, 5, 6, 7, 8, 9}));
  // Closed exactly at the budget's last free position: the model's own tag, nothing forced.
  EXPECT_EQ(run(spec(2, true), {1, 2, kClose, 3}), (std::vector<int32_t>{1, 2, kClose, 3}));
}

TEST(ThinkBudget, OnlyOneBlockIsCapped) {
  // After the forced close, a second <think> opens nothing the budget watches.
  EXPECT_EQ(run(spec(1, true), {1, 2, kOpen, 3, 4, 5}), (std::vector<int32_t>{1, kClose, kOpen, 3, 4, 5}));
}

TEST(ThinkBudget, InactiveForcesNothingAndCountsNothing) {
  ThinkBudget b(ThinkBudgetSpec{});
  for (int32_t t : {kOpen, 1, 2, 3}) {
    EXPECT_EQ(b.forced_token(), -1);
    b.advance(t);
  }
  EXPECT_EQ(b.used(), 0);
  ThinkBudget counted(spec(10, true));
  for (int32_t t : {1, 2, 3}) counted.advance(t);
  EXPECT_EQ(counted.used(), 3);
}

}  // namespace
}  // namespace dpserve
