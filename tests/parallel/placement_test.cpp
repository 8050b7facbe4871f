// The start-up log's "which ranks run on which host" line (expected strings written from the rule:
// hosts in order of their first rank, consecutive ranks as ranges).
#include <gtest/gtest.h>

#include "parallel/placement.h"

namespace dpserve {
namespace {

TEST(Placement, GroupsRanksByHost) {
  EXPECT_EQ(format_placement({"host-a", "host-a", "host-b", "host-b"}), "host-a: ranks 0-1; host-b: ranks 2-3");
  EXPECT_EQ(format_placement({"n1", "n2", "n1", "n1", "n2"}), "n1: ranks 0, 2-3; n2: ranks 1, 4");
  EXPECT_EQ(format_placement({"only"}), "only: rank 0");
  EXPECT_EQ(format_placement({"x", "y"}), "x: rank 0; y: rank 1");
  EXPECT_EQ(format_placement({}), "");
}

}  // namespace
}  // namespace dpserve
