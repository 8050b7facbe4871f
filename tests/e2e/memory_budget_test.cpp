// MemoryBudget (--image-decode-memory): shares up to the capacity pass at once, a share that does
// not fit waits until one is returned, and gives up (null: the route's 429) after its wait.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "server/memory_budget.h"

namespace dpserve {
namespace {

using std::chrono::milliseconds;

TEST(MemoryBudget, SharesUpToTheCapacityPassTheRestWaitOrGiveUp) {
  MemoryBudget b(100);
  auto a = b.acquire(60, milliseconds(0));
  ASSERT_TRUE(a);
  auto c = b.acquire(40, milliseconds(0));
  ASSERT_TRUE(c);
  EXPECT_EQ(b.in_use(), 100);
  EXPECT_FALSE(b.acquire(1, milliseconds(20)));  // full: gives up after its wait
  c.reset();
  EXPECT_EQ(b.in_use(), 60);
  EXPECT_FALSE(b.acquire(41, milliseconds(0)));
  EXPECT_TRUE(b.acquire(40, milliseconds(0)));    // returned when the handle went
  EXPECT_EQ(b.in_use(), 60);
}

TEST(MemoryBudget, AWaitingShareGetsInWhenAnotherIsReturned) {
  MemoryBudget b(100);
  auto a = b.acquire(100, milliseconds(0));
  std::atomic<bool> got{false};
  std::thread t([&] {
    auto s = b.acquire(70, milliseconds(30000));  // bounded; released long before
    got = s != nullptr;
  });
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(got.load());
  a.reset();
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(b.in_use(), 0);
}

}  // namespace
}  // namespace dpserve
