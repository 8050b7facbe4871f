// gpt-oss's stacked experts split per expert (model/gpt_oss_experts.h), checked element by element
// against values decoded here from the formats' definitions:
//  * MXFP4: an e2m1 code is sign (bit 3), exponent (bits 2-1), mantissa (bit 0), worth
//    (-1)^s * 0.m * 2^0 when the exponent is 0, else (-1)^s * 1.m * 2^(e - 1); a block's 32 values
//    times 2^(scale - 127); byte b holds element 2b low and 2b + 1 high. The Q8_0 blocks it becomes
//    must decode to exactly those values; a scale an f16 cannot hold gives bf16, also exact; 0xff
//    (NaN) is refused.
//  * the dense (transformers) form: gate_up_proj [E, H, 2I] input-major, gate the even columns.
//  * GGUF's MXFP4 blocks (ggml's packing: element k low, k + 16 high), through mxfp4.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/bf16.h"
#include "core/check.h"
#include "model/gpt_oss_experts.h"
#include "model/mxfp4.h"

namespace dpserve {
namespace {

double e2m1(uint8_t code) {
  const int s = code >> 3, e = (code >> 1) & 3, m = code & 1;
  const double mag = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::ldexp(1.0, e - 1);
  return s ? -mag : mag;
}

ModelConfig tiny(int64_t E, int64_t H, int64_t I) {
  ModelConfig c;
  c.arch = Arch::GptOss;
  c.n_layers = 1;
  c.hidden = H;
  c.moe_ffn = I;
  c.n_experts = E;
  return c;
}

TensorInfo info(DType t, std::vector<int64_t> shape, const void* data) {
  TensorInfo i;
  i.dtype = t;
  i.shape = std::move(shape);
  i.data = data;
  i.file = "test";
  return i;
}

// Element (r, k) of a split matrix, whatever dtype it came out as.
double element(const TensorInfo& t, int64_t r, int64_t k) {
  const int64_t cols = t.shape[1];
  const auto* p = static_cast<const uint8_t*>(t.data);
  switch (t.dtype) {
    case DType::Q8_0: {
      const uint8_t* b = p + (r * (cols / 32) + k / 32) * 34;
      f16_t d;
      std::memcpy(&d, b, 2);
      return double(f16_to_f32(d)) * double(int8_t(b[2 + k % 32]));
    }
    case DType::BF16: {
      bf16_t v;
      std::memcpy(&v, p + (r * cols + k) * 2, 2);
      return bf16_to_f32(v);
    }
    case DType::F32: {
      float v;
      std::memcpy(&v, p + (r * cols + k) * 4, 4);
      return v;
    }
    default: ADD_FAILURE() << "unexpected dtype " << dtype_name(t.dtype); return NAN;
  }
}

struct Mxfp4Expert {
  std::vector<uint8_t> gub, gus, db, ds;  // blocks and scales of gate_up and down
  std::vector<float> gu_bias, d_bias;
};

// The stacked MXFP4 tensors of E experts, every code drawn, scales from `scale_lo`..`scale_hi`.
Mxfp4Expert draw(int64_t E, int64_t H, int64_t I, int scale_lo, int scale_hi, uint32_t seed) {
  std::mt19937 rng(seed);
  Mxfp4Expert x;
  x.gub.resize(size_t(E * 2 * I * H / 2));
  x.gus.resize(size_t(E * 2 * I * H / 32));
  x.db.resize(size_t(E * H * I / 2));
  x.ds.resize(size_t(E * H * I / 32));
  for (auto& b : x.gub) b = uint8_t(rng());
  for (auto& b : x.db) b = uint8_t(rng());
  std::uniform_int_distribution<int> sc(scale_lo, scale_hi);
  for (auto& s : x.gus) s = uint8_t(sc(rng));
  for (auto& s : x.ds) s = uint8_t(sc(rng));
  std::uniform_real_distribution<float> u(-1, 1);
  x.gu_bias.resize(size_t(E * 2 * I));
  x.d_bias.resize(size_t(E * H));
  for (auto& v : x.gu_bias) v = u(rng);
  for (auto& v : x.d_bias) v = u(rng);
  return x;
}

void add_mxfp4(WeightStore& s, const Mxfp4Expert& x, int64_t E, int64_t H, int64_t I) {
  const std::string p = "model.layers.0.mlp.experts.";
  s.add_bytes(p + "gate_up_proj_blocks", info(DType::F32, {E, 2 * I, H / 32, 16}, x.gub.data()));
  s.add_bytes(p + "gate_up_proj_scales", info(DType::F32, {E, 2 * I, H / 32}, x.gus.data()));
  s.add_bytes(p + "down_proj_blocks", info(DType::F32, {E, H, I / 32, 16}, x.db.data()));
  s.add_bytes(p + "down_proj_scales", info(DType::F32, {E, H, I / 32}, x.ds.data()));
  s.add(p + "gate_up_proj_bias", info(DType::F32, {E, 2 * I}, x.gu_bias.data()));
  s.add(p + "down_proj_bias", info(DType::F32, {E, H}, x.d_bias.data()));
}

// Stacked row `row` (of `cols` values) of expert e, element k, from the definition.
double mx_value(const std::vector<uint8_t>& blocks, const std::vector<uint8_t>& scales, int64_t rows, int64_t cols,
                int64_t e, int64_t row, int64_t k) {
  const int64_t r = e * rows + row;
  const uint8_t byte = blocks[size_t(r * cols / 2 + k / 2)];
  const uint8_t code = k % 2 == 0 ? byte & 15 : byte >> 4;
  return std::ldexp(e2m1(code), int(scales[size_t(r * cols / 32 + k / 32)]) - 127);
}

// `want`: the dtype every split matrix must have (null: any, the values decide).
void expect_split_equals_definition(const WeightStore& s, const Mxfp4Expert& x, int64_t E, int64_t H, int64_t I,
                                    const DType* want) {
  for (int64_t e = 0; e < E; ++e) {
    const std::string q = "model.layers.0.mlp.experts." + std::to_string(e) + ".";
    const TensorInfo& g = s.get(q + "gate_proj.weight");
    const TensorInfo& u = s.get(q + "up_proj.weight");
    const TensorInfo& d = s.get(q + "down_proj.weight");
    if (want) ASSERT_EQ(g.dtype, *want);
    ASSERT_EQ(g.shape, (std::vector<int64_t>{I, H}));
    ASSERT_EQ(d.shape, (std::vector<int64_t>{H, I}));
    for (int64_t i = 0; i < I; ++i)
      for (int64_t h = 0; h < H; ++h) {
        ASSERT_EQ(element(g, i, h), mx_value(x.gub, x.gus, 2 * I, H, e, 2 * i, h)) << e << " gate " << i << "," << h;
        ASSERT_EQ(element(u, i, h), mx_value(x.gub, x.gus, 2 * I, H, e, 2 * i + 1, h)) << e << " up " << i << "," << h;
      }
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < I; ++i)
        ASSERT_EQ(element(d, h, i), mx_value(x.db, x.ds, H, I, e, h, i)) << e << " down " << h << "," << i;
    const std::vector<float> bg = s.vector_f32(q + "gate_proj.bias", I), bu = s.vector_f32(q + "up_proj.bias", I);
    for (int64_t i = 0; i < I; ++i) {
      EXPECT_EQ(bg[size_t(i)], x.gu_bias[size_t(e * 2 * I + 2 * i)]);
      EXPECT_EQ(bu[size_t(i)], x.gu_bias[size_t(e * 2 * I + 2 * i + 1)]);
    }
    EXPECT_EQ(s.vector_f32(q + "down_proj.bias", H)[size_t(H - 1)], x.d_bias[size_t(e * H + H - 1)]);
  }
  // The stacked tensors are gone: nothing is counted or loaded twice.
  EXPECT_FALSE(s.has("model.layers.0.mlp.experts.gate_up_proj_bias"));
  EXPECT_TRUE(s.bytes_left().empty());
}

TEST(GptOssExperts, Mxfp4BecomesQ8_0WithTheSameValues) {
  const int64_t E = 3, H = 64, I = 96;
  // Scales 104..143: 2^(s - 128) from an f16's smallest subnormal to its largest power of two.
  const Mxfp4Expert x = draw(E, H, I, 104, 143, 7);
  WeightStore s;
  add_mxfp4(s, x, E, H, I);
  split_gpt_oss_experts(tiny(E, H, I), s);
  const DType q8 = DType::Q8_0;
  expect_split_equals_definition(s, x, E, H, I, &q8);
}

TEST(GptOssExperts, Mxfp4ScalesBeyondAnF16BecomeBf16) {
  const int64_t E = 2, H = 32, I = 32;
  Mxfp4Expert x = draw(E, H, I, 110, 130, 8);
  x.gus[3] = 200;  // 2^72: no f16 holds it
  x.ds[5] = 20;    // 2^-108
  WeightStore s;
  add_mxfp4(s, x, E, H, I);
  split_gpt_oss_experts(tiny(E, H, I), s);
  expect_split_equals_definition(s, x, E, H, I, nullptr);
  // Expert 0's up rows (stacked row 3 is up row 1) and down rows hold the outliers: bf16; expert 1's, Q8_0.
  EXPECT_EQ(s.get("model.layers.0.mlp.experts.0.up_proj.weight").dtype, DType::BF16);
  EXPECT_EQ(s.get("model.layers.0.mlp.experts.0.down_proj.weight").dtype, DType::BF16);
  EXPECT_EQ(s.get("model.layers.0.mlp.experts.0.gate_proj.weight").dtype, DType::Q8_0);
  EXPECT_EQ(s.get("model.layers.0.mlp.experts.1.up_proj.weight").dtype, DType::Q8_0);
}

TEST(GptOssExperts, NanScaleAndMissingTensorsAreRefused) {
  const int64_t E = 1, H = 32, I = 32;
  Mxfp4Expert x = draw(E, H, I, 120, 130, 9);
  x.ds[0] = 0xff;
  WeightStore s;
  add_mxfp4(s, x, E, H, I);
  try {
    split_gpt_oss_experts(tiny(E, H, I), s);
    ADD_FAILURE() << "a NaN scale was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
  WeightStore none;
  const std::vector<float> b(size_t(2 * I + H));
  none.add("model.layers.0.mlp.experts.gate_up_proj_bias", info(DType::F32, {E, 2 * I}, b.data()));
  none.add("model.layers.0.mlp.experts.down_proj_bias", info(DType::F32, {E, H}, b.data()));
  try {
    split_gpt_oss_experts(tiny(E, H, I), none);
    ADD_FAILURE() << "no experts were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gate_up_proj"), std::string::npos) << e.what();
  }
}

// transformers' dense form: out = x @ gate_up_proj[e], gate = out[..., ::2], up = out[..., 1::2].
TEST(GptOssExperts, DenseExpertsAreTransposedAndDeinterleaved) {
  const int64_t E = 2, H = 5, I = 3;
  std::vector<float> gu(size_t(E * H * 2 * I)), dn(size_t(E * I * H)), gub(size_t(E * 2 * I)), db(size_t(E * H));
  for (size_t k = 0; k < gu.size(); ++k) gu[k] = float(k) + 0.25f;
  for (size_t k = 0; k < dn.size(); ++k) dn[k] = -float(k);
  WeightStore s;
  const std::string p = "model.layers.0.mlp.experts.";
  s.add(p + "gate_up_proj", info(DType::F32, {E, H, 2 * I}, gu.data()));
  s.add(p + "down_proj", info(DType::F32, {E, I, H}, dn.data()));
  s.add(p + "gate_up_proj_bias", info(DType::F32, {E, 2 * I}, gub.data()));
  s.add(p + "down_proj_bias", info(DType::F32, {E, H}, db.data()));
  split_gpt_oss_experts(tiny(E, H, I), s);
  for (int64_t e = 0; e < E; ++e) {
    const std::string q = p + std::to_string(e) + ".";
    for (int64_t i = 0; i < I; ++i)
      for (int64_t h = 0; h < H; ++h) {
        EXPECT_EQ(element(s.get(q + "gate_proj.weight"), i, h), gu[size_t((e * H + h) * 2 * I + 2 * i)]);
        EXPECT_EQ(element(s.get(q + "up_proj.weight"), i, h), gu[size_t((e * H + h) * 2 * I + 2 * i + 1)]);
        EXPECT_EQ(element(s.get(q + "down_proj.weight"), h, i), dn[size_t((e * I + i) * H + h)]);
      }
  }
  EXPECT_FALSE(s.has(p + "gate_up_proj"));
  EXPECT_FALSE(s.has(p + "down_proj"));
}

// GGUF's MXFP4 (ggml's block_mxfp4, 17 bytes: the scale, then 16 code bytes) packs element k in byte
// k's low nibble and element k + 16 in its high one; mxfp4.h's Halves packing must decode that, to Q8_0
// (scales 104..143) or bf16 (any other but NaN), value for value.
TEST(GptOssExperts, GgufHalvesPackingDecodesByDefinition) {
  std::mt19937 rng(11);
  const int64_t n = 64;
  std::vector<uint8_t> blocks(size_t(n * 17));
  for (auto& b : blocks) b = uint8_t(rng());
  for (int64_t i = 0; i < n; ++i) blocks[size_t(i * 17)] = uint8_t(104 + i % 40);  // every scale an f16 holds
  auto value = [&](int64_t i, int k) {
    const uint8_t byte = blocks[size_t(i * 17 + 1 + k % 16)];
    return std::ldexp(e2m1(k < 16 ? byte & 15 : byte >> 4), int(blocks[size_t(i * 17)]) - 127);
  };
  const Mxfp4Blocks b{blocks.data() + 1, blocks.data(), 17, 17, Mxfp4Packing::Halves};
  ASSERT_TRUE(mxfp4_fits_q8_0(b, 0, n, "test"));
  std::vector<uint8_t> q8(size_t(n * 34));
  mxfp4_to_q8_0(b, 0, n, q8.data());
  const TensorInfo t = info(DType::Q8_0, {1, n * 32}, q8.data());
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 32; ++k) ASSERT_EQ(element(t, 0, i * 32 + k), value(i, k)) << i << "," << k;
  blocks[17 * 5] = 250;  // 2^122: bf16 only
  blocks[17 * 9] = 3;    // 2^-124
  EXPECT_FALSE(mxfp4_fits_q8_0(b, 0, n, "test"));
  std::vector<bf16_t> bf(size_t(n * 32));
  mxfp4_to_bf16(b, 0, n, bf.data());
  const TensorInfo tb = info(DType::BF16, {1, n * 32}, bf.data());
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 32; ++k) ASSERT_EQ(element(tb, 0, i * 32 + k), value(i, k)) << i << "," << k;
  blocks[17 * 2] = 0xff;
  EXPECT_THROW(mxfp4_fits_q8_0(b, 0, n, "test"), Error);
}

}  // namespace
}  // namespace dpserve
