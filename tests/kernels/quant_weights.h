// Quantized test matrices shared by the kernels' tests: rows quantized from random floats, or
// random bytes with sane f16 scales, in GGML's plain blocks and repacked (*_X16).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"
#include "test_util.h"

namespace dpserve::test {

// A quantized [N, K] matrix stored with a row stride of K + one block (plain), and repacked.
struct QWeights {
  std::vector<uint8_t> plain;
  WeightView pv;
  InterleavedWeight x16;
};

// Rows quantized from random floats (realistic codes) or, with `raw`, random bytes with sane
// finite f16 scales (every code pattern, including Q8_0's -128 and Q6_K's scale -128).
inline QWeights make_weights(DType t, int64_t N, int64_t K, uint32_t seed, bool raw) {
  QWeights w;
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  const int64_t ld = K + be, row_bytes = dtype_row_bytes(t, ld);
  w.plain.assign(size_t(N * row_bytes), 0);
  std::mt19937 rng(seed);
  if (raw) {
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : w.plain) b = uint8_t(byte(rng));
    std::uniform_int_distribution<int> exp(5, 16), mant(0, 1023), sign(0, 1);
    auto f16 = [&](bool positive) {
      return uint16_t(((positive ? 0 : sign(rng)) << 15) | (exp(rng) << 10) | mant(rng));  // 2^-10 .. 4
    };
    for (int64_t r = 0; r < N; ++r)
      for (int64_t b = 0; b < ld / be; ++b) {
        uint8_t* p = w.plain.data() + r * row_bytes + b * bb;
        uint16_t d = f16(false), dmin = f16(true);
        if (t == DType::Q6_K) std::memcpy(p + 208, &d, 2);
        else std::memcpy(p, &d, 2);
        if (t == DType::Q4_K || t == DType::Q5_K) std::memcpy(p + 2, &dmin, 2);
      }
  } else {
    const std::vector<float> x = test::random_floats(N * ld, seed);
    for (int64_t r = 0; r < N; ++r) quantize_row(t, x.data() + r * ld, w.plain.data() + r * row_bytes, ld);
  }
  w.pv = WeightView{w.plain.data(), t, N, K, ld};
  w.x16 = interleave(w.pv);
  return w;
}

}  // namespace dpserve::test
