#include "bench_client/stats.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace dpserve::bench {
namespace {

double sorted_percentile(const std::vector<double>& s, double p) {
  if (s.empty()) return 0;
  const double rank = p / 100.0 * double(s.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  const double frac = rank - double(lo);
  return s[lo] + (s[hi] - s[lo]) * frac;
}

}  // namespace

double percentile(std::vector<double> values, double p) {
  if (!(p >= 0 && p <= 100)) fail("percentile must be in [0, 100], got {}", p);
  std::sort(values.begin(), values.end());
  return sorted_percentile(values, p);
}

Summary summarize(const std::vector<double>& values) {
  Summary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::vector<double> v = values;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(v.size());
  double sq = 0;
  for (double x : v) sq += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(sq / double(v.size()));
  s.median = sorted_percentile(v, 50);
  s.p90 = sorted_percentile(v, 90);
  s.p99 = sorted_percentile(v, 99);
  s.min = v.front();
  s.max = v.back();
  return s;
}

}  // namespace dpserve::bench
