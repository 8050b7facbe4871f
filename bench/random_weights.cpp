#include "bench/random_weights.h"

#include <cstring>
#include <random>

#include "core/bf16.h"

namespace dpserve {

std::vector<uint8_t> random_plain(DType t, int64_t n, int64_t k) {
  const int64_t bb = dtype_block_bytes(t), nb = n * k / dtype_block_elems(t);
  std::vector<uint8_t> p(size_t(nb * bb));
  std::mt19937 rng(7);
  for (auto& b : p) b = uint8_t(rng());
  // The scales are where each type keeps them: Q6_K after its codes, the others first.
  const uint16_t d = f32_to_f16(1.0f / 256);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = p.data() + b * bb;
    std::memcpy(t == DType::Q6_K ? blk + 208 : blk, &d, 2);
    if (t == DType::Q4_K || t == DType::Q5_K) std::memcpy(blk + 2, &d, 2);
  }
  return p;
}

}  // namespace dpserve
