// Repacked quantized weights taken to bf16 pairs (kernels/quant_bf16.h), every type, against the
// plain blocks decoded by dequantize_row (which matches gguf-py, dequant_test.cpp) and rounded by
// f32_to_bf16: the conversion must give every weight of every row exactly that bf16, in the
// BF16_X16 place of its row and element, for whole groups, a padded last group and ranges that
// start and end inside a row.
#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/cpu.h"
#include "kernels/dequant.h"
#include "kernels/quant_bf16.h"
#include "quant_weights.h"

namespace dpserve {
namespace {

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Every group's elements [k0, k1) converted, checked weight by weight against the plain rows.
void expect_converted(const test::QWeights& w, int64_t k0, int64_t k1, const std::string& what) {
  const DType t = w.pv.dtype;
  const int64_t N = w.pv.rows, K = w.pv.cols, n = k1 - k0;
  const int64_t group_bytes = dtype_row_bytes(t, K) * 16;
  std::vector<float> row(static_cast<size_t>(K));
  std::vector<uint16_t> got(static_cast<size_t>(n * 16));
  int64_t bad = 0;
  for (int64_t g = 0; g * 16 < N; ++g) {
    // A canary past the end: the conversion writes exactly n x 16 values.
    got.assign(static_cast<size_t>(n * 16) + 32, 0x7fc1);
    quant_group_to_bf16(w.x16.view.dtype, static_cast<const uint8_t*>(w.x16.view.data) + g * group_bytes, k0, k1, got.data());
    for (size_t i = size_t(n * 16); i < got.size(); ++i) ASSERT_EQ(got[i], 0x7fc1) << what << ": wrote past the range";
    for (int r = 0; r < 16; ++r) {
      const int64_t nr = g * 16 + r;
      if (nr < N) dequantize_row(t, w.plain.data() + nr * dtype_row_bytes(t, w.pv.ld), row.data(), K);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t e = k - k0;
        const uint16_t v = got[size_t(e / 2 * 32 + 2 * r + (e & 1))];
        // Rows past the matrix are zeros (either sign: a zero scale times a code).
        const bool ok = nr < N ? v == f32_to_bf16(row[size_t(k)]) : bf16_to_f32(v) == 0.0f;
        if (!ok && ++bad <= 5)
          ADD_FAILURE() << what << ": row " << nr << " element " << k << ": got bf16 0x" << std::hex << v
                        << " want 0x" << (nr < N ? f32_to_bf16(row[size_t(k)]) : 0) << std::dec;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(QuantToBf16, EveryWeightIsItsDecodedValueRounded) {
  std::printf("[ info ] conversion path: %s\n", cpu_features().avx512bf16 ? "AVX-512 BF16" : "rows (any CPU)");
  for (const DType t : kTypes)
    for (const bool raw : {false, true}) {
      const int64_t be = dtype_block_elems(t);
      const int64_t K = be == 32 ? 7 * 32 : 3 * 256;
      for (const int64_t N : {16, 37}) {  // one whole group; three, the last of five rows
        const test::QWeights w = test::make_weights(t, N, K, uint32_t(N * 7 + int(t) + 100 * raw), raw);
        const std::string what = std::string(dtype_name(t)) + " N=" + std::to_string(N) + (raw ? " (random bytes)" : "");
        expect_converted(w, 0, K, what + " whole rows");
        expect_converted(w, be, K - be, what + " blocks [1, last)");
        expect_converted(w, K - be, K, what + " last block");
      }
    }
}

TEST(QuantToBf16, RefusesWhatItCannotConvert) {
  uint8_t bytes[4096] = {};
  uint16_t out[4096];
  EXPECT_THROW(quant_group_to_bf16(DType::Q4_K, bytes, 0, 256, out), std::exception);  // plain, not repacked
  EXPECT_THROW(quant_group_to_bf16(DType::BF16_X16, bytes, 0, 32, out), std::exception);
  EXPECT_THROW(quant_group_to_bf16(DType::Q4_K_X16, bytes, 0, 128, out), std::exception);  // half a superblock
  EXPECT_THROW(quant_group_to_bf16(DType::Q8_0_X16, bytes, 64, 32, out), std::exception);
}

}  // namespace
}  // namespace dpserve
