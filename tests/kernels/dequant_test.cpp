// dequantize_row against llama.cpp's own NumPy decoder (gguf-py), on random blocks in which every
// quant, scale and min bit pattern occurs (fixtures/gguf_py/README.md says how they were made).
#include "kernels/dequant.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_util.h"

namespace dpserve {
namespace {

class DequantFixture : public ::testing::TestWithParam<DType> {};

TEST_P(DequantFixture, MatchesGgufPyBitForBit) {
  const DType t = GetParam();
  const std::string name = dtype_name(t);
  const std::vector<uint8_t> blocks = test::read_fixture("gguf_py/dequant_" + name + ".blocks");
  const std::vector<float> want = test::read_fixture_f32("gguf_py/dequant_" + name + ".f32");
  const int64_t nb = int64_t(blocks.size()) / dtype_block_bytes(t);
  ASSERT_EQ(int64_t(want.size()), nb * dtype_block_elems(t));
  ASSERT_GT(nb, 0);
  std::vector<float> got(want.size());
  dequantize_row(t, blocks.data(), got.data(), int64_t(got.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    ASSERT_EQ(a, b) << name << " element " << i << " (block " << int64_t(i) / dtype_block_elems(t) << "): got "
                    << got[i] << ", gguf-py " << want[i];
  }
  // dequantize_at agrees with the row decoder.
  for (int64_t c = 0; c < int64_t(want.size()); c += 37) EXPECT_EQ(dequantize_at(t, blocks.data(), c), got[c]);
}

INSTANTIATE_TEST_SUITE_P(Types, DequantFixture,
                         ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace dpserve
