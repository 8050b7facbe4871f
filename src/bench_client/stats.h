// Summary statistics of latency samples as SGLang's bench_serving reports them (mean, median, p90, p99),
// with NumPy's default percentile definition so numbers compare across tools.
#pragma once

#include <cstddef>
#include <vector>

namespace dpserve::bench {

// p in [0, 100]; linear interpolation between the closest ranks (numpy.percentile's "linear").
// An empty sample gives 0, as bench_serving's `np.mean(x or 0)` does.
double percentile(std::vector<double> values, double p);

struct Summary {
  size_t count = 0;
  double mean = 0, median = 0, p90 = 0, p99 = 0, std = 0, min = 0, max = 0;
};

// std is the population standard deviation (numpy.std's default).
Summary summarize(const std::vector<double>& values);

}  // namespace dpserve::bench
