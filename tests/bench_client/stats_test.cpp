// Percentiles and summaries against values worked out by hand (numpy.percentile "linear" definition).
#include <gtest/gtest.h>

#include "bench_client/stats.h"
#include "core/check.h"

namespace dpserve::bench {
namespace {

TEST(BenchStats, PercentileInterpolatesBetweenClosestRanks) {
  const std::vector<double> v{4, 1, 3, 2};  // sorted: 1 2 3 4, ranks 0..3
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4.0);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);   // rank 1.5
  EXPECT_DOUBLE_EQ(percentile(v, 90), 3.7);   // rank 2.7 -> 3 + 0.7
  EXPECT_DOUBLE_EQ(percentile(v, 99), 3.97);  // rank 2.97
  // sorted 15 20 35 40 50: p40 is rank 1.6 -> 20 + 0.6 * 15 = 29; p75 is rank 3 exactly -> 40.
  const std::vector<double> w{50, 15, 40, 20, 35};
  EXPECT_DOUBLE_EQ(percentile(w, 40), 29.0);
  EXPECT_DOUBLE_EQ(percentile(w, 75), 40.0);
  EXPECT_DOUBLE_EQ(percentile({7.5}, 99), 7.5);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0.0);
}

TEST(BenchStats, PercentileRejectsOutOfRange) {
  EXPECT_THROW(percentile({1, 2}, -1), Error);
  EXPECT_THROW(percentile({1, 2}, 100.5), Error);
}

TEST(BenchStats, SummaryOfKnownSample) {
  // Mean 5, population standard deviation exactly 2 (the textbook example).
  const Summary s = summarize({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_EQ(s.count, 8u);
  EXPECT_DOUBLE_EQ(s.mean, 5.0);
  EXPECT_DOUBLE_EQ(s.std, 2.0);
  EXPECT_DOUBLE_EQ(s.median, 4.5);
  EXPECT_DOUBLE_EQ(s.p90, 7.6);   // rank 6.3 -> 7 + 0.3 * 2
  EXPECT_DOUBLE_EQ(s.p99, 8.86);  // rank 6.93 -> 7 + 0.93 * 2
  EXPECT_DOUBLE_EQ(s.min, 2.0);
  EXPECT_DOUBLE_EQ(s.max, 9.0);
  const Summary e = summarize({});
  EXPECT_EQ(e.count, 0u);
  EXPECT_EQ(e.mean, 0.0);
  EXPECT_EQ(e.p99, 0.0);
}

}  // namespace
}  // namespace dpserve::bench
