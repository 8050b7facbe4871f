// Poisson arrivals: exponential gaps with the requested mean, seeded, and the infinite-rate burst.
#include <gtest/gtest.h>

#include <cmath>

#include "bench_client/arrivals.h"
#include "core/check.h"

namespace dpserve::bench {
namespace {

TEST(BenchArrivals, ExponentialGapsHaveTheRequestedMean) {
  const double rate = 8.0;
  const size_t n = 40001;
  const auto t = arrival_times(n, rate, 123);
  ASSERT_EQ(t.size(), n);
  EXPECT_EQ(t[0], 0.0);
  double sum = 0, sq = 0;
  size_t above_mean = 0;
  for (size_t i = 1; i < n; ++i) {
    const double g = t[i] - t[i - 1];
    ASSERT_GE(g, 0.0);
    sum += g;
    sq += g * g;
    if (g > 1.0 / rate) ++above_mean;
  }
  const double m = double(n - 1);
  const double mean = sum / m, sd = std::sqrt(sq / m - mean * mean);
  // Standard error of the mean is 0.125 / 200 = 0.000625; 0.004 is over 6 of them.
  EXPECT_NEAR(mean, 1.0 / rate, 0.004);
  // An exponential distribution's standard deviation equals its mean ...
  EXPECT_NEAR(sd / mean, 1.0, 0.04);
  // ... and P(gap > mean) = e^-1.
  EXPECT_NEAR(double(above_mean) / m, std::exp(-1.0), 0.01);
}

TEST(BenchArrivals, SeedDeterminesTheSchedule) {
  EXPECT_EQ(arrival_times(100, 3.0, 7), arrival_times(100, 3.0, 7));
  EXPECT_NE(arrival_times(100, 3.0, 7), arrival_times(100, 3.0, 8));
}

TEST(BenchArrivals, InfiniteRateSendsEverythingAtOnce) {
  const auto t = arrival_times(50, INFINITY, 1);
  ASSERT_EQ(t.size(), 50u);
  for (double x : t) EXPECT_EQ(x, 0.0);
}

TEST(BenchArrivals, RejectsNonPositiveRates) {
  EXPECT_THROW(arrival_times(3, 0.0, 1), Error);
  EXPECT_THROW(arrival_times(3, -2.0, 1), Error);
  EXPECT_THROW(arrival_times(3, NAN, 1), Error);
}

}  // namespace
}  // namespace dpserve::bench
