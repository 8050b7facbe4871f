// The DP router (engine/router.h) against loads worked out by hand from its contract: the least loaded
// group wins, ties go to the group after the last one chosen, and a finished request takes all of
// its tokens (prompt and generated) off its group's count.
#include <gtest/gtest.h>

#include "engine/router.h"

using namespace dpserve;

TEST(Router, RoundRobinCyclesAndPreferWins) {
  Router r(3, LoadBalanceMethod::kRoundRobin);
  EXPECT_EQ(r.assign(1, 10), 0);
  EXPECT_EQ(r.assign(2, 10), 1);
  EXPECT_EQ(r.assign(3, 10, /*prefer=*/0), 0);  // a valid preference is taken as it is
  EXPECT_EQ(r.assign(4, 10), 2);                // and does not move the rotation
  EXPECT_EQ(r.assign(5, 10, /*prefer=*/7), 0);  // out of range: ignored
  EXPECT_EQ(r.requests(0), 3);
}

TEST(Router, LeastTokensCountsGeneratedTokensAndReleasesThemAll) {
  Router r(3, LoadBalanceMethod::kLeastTokens);
  EXPECT_EQ(r.assign(1, 100), 0);  // all empty: group 0
  EXPECT_EQ(r.assign(2, 10), 1);   // 1 and 2 tie at 0: the one after the last chosen
  EXPECT_EQ(r.assign(3, 50), 2);   // loads 100 / 10 / 0
  EXPECT_EQ(r.assign(4, 5), 1);    // loads 100 / 10 / 50
  EXPECT_EQ(r.tokens(1), 15);
  for (int i = 0; i < 3; ++i) r.on_token(2);  // request 2 generated 3 tokens: 10 + 3 + 5
  EXPECT_EQ(r.tokens(1), 18);
  r.on_finished(2);  // its prompt and its 3 generated tokens leave group 1: request 4's 5 remain
  EXPECT_EQ(r.tokens(1), 5);
  EXPECT_EQ(r.requests(1), 1);
  r.on_finished(1);
  EXPECT_EQ(r.tokens(0), 0);
  EXPECT_EQ(r.requests(0), 0);
  r.on_finished(1);  // twice, or unknown: nothing changes
  r.on_token(99);
  EXPECT_EQ(r.tokens(0), 0);
  EXPECT_EQ(r.assign(5, 1), 0);  // loads 0 / 5 / 50
}

TEST(Router, ShortestQueueCountsRequestsNotTokens) {
  Router r(2, LoadBalanceMethod::kShortestQueue);
  EXPECT_EQ(r.assign(1, 1000), 0);
  EXPECT_EQ(r.assign(2, 1), 1);
  EXPECT_EQ(r.assign(3, 1), 0);  // 1 request each: the tie goes to the group after 1
  r.on_finished(1);
  EXPECT_EQ(r.assign(4, 1), 1);  // 1 request each again: the group after 0, the last chosen
  EXPECT_EQ(r.requests(0), 1);
  EXPECT_EQ(r.requests(1), 2);
}
