#include "model/gpt_oss_experts.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/bf16.h"
#include "core/check.h"
#include "model/mxfp4.h"
#include "model/stacked_experts.h"

namespace dpserve {

namespace {

constexpr int64_t kBlock = 32, kBlockBytes = 16, kQ8Bytes = 34;

// Row e of a [E, n] float tensor (biases) as fp32.
std::vector<float> bias_row(const TensorInfo& t, int64_t e, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  weight_row_to_f32(WeightView{t.data, t.dtype, t.shape[0], n, n}, e, out.data());
  return out;
}

void add_vector(WeightStore& store, const std::string& name, const std::vector<float>& v) {
  std::vector<uint8_t> bytes(v.size() * sizeof(float));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  TensorInfo t;
  t.dtype = DType::F32;
  t.shape = {int64_t(v.size())};
  store.add_owned(name, std::move(t), std::move(bytes));
}

// Output-major MXFP4 rows `rows` (row r of the result = stacked row rows[r]) of one expert, each of
// `cols` values, as Q8_0 (or bf16 when a scale is outside an f16's powers of two).
void add_mxfp4_matrix(WeightStore& store, const std::string& name, const uint8_t* codes, const uint8_t* scales,
                      const std::vector<int64_t>& rows, int64_t cols, const std::string& file) {
  const int64_t nb = cols / kBlock;
  const Mxfp4Blocks blocks{codes, scales, kBlockBytes, 1, Mxfp4Packing::Pairs};
  bool fits = true;
  for (int64_t r : rows) fits = mxfp4_fits_q8_0(blocks, r * nb, nb, name + " in " + file) && fits;
  TensorInfo t;
  t.shape = {int64_t(rows.size()), cols};
  t.file = file;
  std::vector<uint8_t> out;
  if (fits) {
    t.dtype = DType::Q8_0;
    out.resize(size_t(int64_t(rows.size()) * nb * kQ8Bytes));
    uint8_t* o = out.data();
    for (int64_t r : rows) mxfp4_to_q8_0(blocks, r * nb, nb, o), o += nb * kQ8Bytes;
  } else {
    t.dtype = DType::BF16;
    out.resize(size_t(int64_t(rows.size()) * cols * 2));
    auto* o = reinterpret_cast<bf16_t*>(out.data());
    for (int64_t r : rows) mxfp4_to_bf16(blocks, r * nb, nb, o), o += cols;
  }
  store.add_owned(name, std::move(t), std::move(out));
}

}  // namespace

void split_gpt_oss_experts(const ModelConfig& c, WeightStore& store) {
  const int64_t E = c.n_experts, H = c.hidden, I = c.moe_ffn;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.experts.";
    const TensorInfo gub = stacked_float(store, p + "gate_up_proj_bias", {E, 2 * I});
    const TensorInfo db = stacked_float(store, p + "down_proj_bias", {E, H});
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = p + std::to_string(e) + ".";
      const std::vector<float> gu = bias_row(gub, e, 2 * I);
      std::vector<float> bg(static_cast<size_t>(I)), bu(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i) bg[size_t(i)] = gu[size_t(2 * i)], bu[size_t(i)] = gu[size_t(2 * i + 1)];
      add_vector(store, q + "gate_proj.bias", bg);
      add_vector(store, q + "up_proj.bias", bu);
      add_vector(store, q + "down_proj.bias", bias_row(db, e, H));
    }
    if (store.has(p + "gate_up_proj")) {
      // Dense: each expert's input-major matrices as the output-major rows the kernels take.
      const TensorInfo gu = stacked_float(store, p + "gate_up_proj", {E, H, 2 * I});
      const TensorInfo dn = stacked_float(store, p + "down_proj", {E, I, H});
      if (gu.dtype != dn.dtype) fail("weights: {}gate_up_proj and down_proj differ in dtype", p);
      for (int64_t e = 0; e < E; ++e) {
        const std::string q = p + std::to_string(e) + ".";
        add_expert_columns(store, q + "gate_proj.weight", gu, e, 0, 2, I);  // gate: the even columns
        add_expert_columns(store, q + "up_proj.weight", gu, e, 1, 2, I);    // up: the odd ones
        add_expert_columns(store, q + "down_proj.weight", dn, e, 0, 1, H);
      }
    } else if (store.has_bytes(p + "gate_up_proj_blocks")) {
      if (H % kBlock != 0 || I % kBlock != 0)
        fail("weights: {}: MXFP4 experts need hidden_size ({}) and intermediate_size ({}) in 32-element blocks", p, H, I);
      const TensorInfo gb = store.take_bytes(p + "gate_up_proj_blocks", {E, 2 * I, H / kBlock, kBlockBytes});
      const TensorInfo gs = store.take_bytes(p + "gate_up_proj_scales", {E, 2 * I, H / kBlock});
      const TensorInfo db2 = store.take_bytes(p + "down_proj_blocks", {E, H, I / kBlock, kBlockBytes});
      const TensorInfo ds = store.take_bytes(p + "down_proj_scales", {E, H, I / kBlock});
      std::vector<int64_t> even(static_cast<size_t>(I)), odd(static_cast<size_t>(I)), all(static_cast<size_t>(H));
      for (int64_t i = 0; i < I; ++i) even[size_t(i)] = 2 * i, odd[size_t(i)] = 2 * i + 1;
      for (int64_t h = 0; h < H; ++h) all[size_t(h)] = h;
      for (int64_t e = 0; e < E; ++e) {
        const std::string q = p + std::to_string(e) + ".";
        const auto* gcodes = static_cast<const uint8_t*>(gb.data) + e * 2 * I * (H / kBlock) * kBlockBytes;
        const auto* gscales = static_cast<const uint8_t*>(gs.data) + e * 2 * I * (H / kBlock);
        add_mxfp4_matrix(store, q + "gate_proj.weight", gcodes, gscales, even, H, gb.file);
        add_mxfp4_matrix(store, q + "up_proj.weight", gcodes, gscales, odd, H, gb.file);
        const auto* dcodes = static_cast<const uint8_t*>(db2.data) + e * H * (I / kBlock) * kBlockBytes;
        const auto* dscales = static_cast<const uint8_t*>(ds.data) + e * H * (I / kBlock);
        add_mxfp4_matrix(store, q + "down_proj.weight", dcodes, dscales, all, I, db2.file);
      }
    } else {
      fail("weights: missing tensor \"{}gate_up_proj\" (or its MXFP4 form, gate_up_proj_blocks / _scales)", p);
    }
    // The stacked tensors (and their biases) are now the per-expert ones.
    store.drop_prefix(p + "gate_up_proj");
    store.drop_prefix(p + "down_proj");
  }
}

}  // namespace dpserve
