// When each benchmark request is sent: a seeded Poisson process (exponential gaps at a given rate),
// or everything at t = 0 when the rate is infinite, as bench_serving's --request-rate does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dpserve::bench {

// Offsets in seconds from the start, non-decreasing; the first request goes at 0 and request i+1
// follows request i after an Exp(rate) gap. rate must be > 0 (infinity allowed).
std::vector<double> arrival_times(size_t n, double rate, uint64_t seed);

}  // namespace dpserve::bench
