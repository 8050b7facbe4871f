#include "bench_client/arrivals.h"

#include <cmath>
#include <random>

#include "core/check.h"

namespace dpserve::bench {

std::vector<double> arrival_times(size_t n, double rate, uint64_t seed) {
  if (!(rate > 0)) fail("--request-rate must be > 0 or inf, got {}", rate);
  std::vector<double> t(n, 0.0);
  if (std::isinf(rate)) return t;
  // Inverse-CDF sampling from the raw 64-bit engine: std::exponential_distribution's output is
  // library-specific, and a seed should mean the same schedule with any standard library.
  std::mt19937_64 rng(seed);
  double now = 0;
  for (size_t i = 1; i < n; ++i) {
    const double u = double(rng() >> 11) * 0x1.0p-53;  // [0, 1)
    now += -std::log1p(-u) / rate;
    t[i] = now;
  }
  return t;
}

}  // namespace dpserve::bench
