// Quantized weight matrices of random codes for the benchmarks: the kernels' speed does not depend
// on the values, only on the blocks being ordinary finite numbers.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace dpserve {

// n plain rows of k elements of block type t (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K): random code bytes,
// every block's scales (d, and dmin for Q4_K / Q5_K) 1/256.
std::vector<uint8_t> random_plain(DType t, int64_t n, int64_t k);

}  // namespace dpserve
