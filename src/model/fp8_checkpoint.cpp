#include "model/fp8_checkpoint.h"

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {

namespace {

constexpr const char* kScaleSuffix = "_scale_inv";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

void read_quantization_config(const nlohmann::json& config, ModelConfig& c) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || it->is_null()) return;
  const nlohmann::json& q = *it;
  if (!q.is_object()) fail("config.json: quantization_config is not an object");
  const std::string method = q.contains("quant_method") && q["quant_method"].is_string()
                                 ? q["quant_method"].get<std::string>() : std::string();
  if (c.arch == Arch::GptOss && method == "mxfp4") return;  // its experts' format (model/gpt_oss_experts.h)
  if (method != "fp8")
    fail("config.json: quantization_config.quant_method \"{}\" is not supported: dpserve loads bf16 / f16 / f32 "
         "folders, fp8 checkpoints with block scales (quant_method fp8, as DeepSeek-V3 and the Qwen3 FP8 releases), "
         "gpt-oss's mxfp4 and GGUF files; load the bf16 release with --quantization q8_0 / q4_k_m to quantize it",
         method);
  for (const auto& [key, v] : q.items())
    if (key != "quant_method" && key != "fmt" && key != "activation_scheme" && key != "weight_block_size" &&
        key != "modules_to_not_convert" && key != "ignored_layers")
      fail("config.json: quantization_config.{} is not supported for an fp8 checkpoint (dpserve reads quant_method, "
           "fmt, activation_scheme, weight_block_size, modules_to_not_convert, ignored_layers)", key);
  if (q.contains("fmt")) {
    const std::string fmt = q["fmt"].is_string() ? q["fmt"].get<std::string>() : std::string();
    if (fmt != "e4m3" && fmt != "float8_e4m3fn")
      fail("config.json: quantization_config.fmt \"{}\" is not supported (e4m3)", fmt);
  }
  if (q.contains("activation_scheme")) {
    const std::string a = q["activation_scheme"].is_string() ? q["activation_scheme"].get<std::string>() : "";
    // Static schemes carry per-tensor input scales for fp8 activations on a GPU; dpserve's activations
    // stay fp32 / bf16, so a calibrated scale would be silently unused.
    if (a != "dynamic")
      fail("config.json: quantization_config.activation_scheme \"{}\" is not supported (dynamic)", a);
  }
  const auto b = q.find("weight_block_size");
  if (b == q.end() || b->is_null())
    fail("config.json: quantization_config has no weight_block_size: fp8 checkpoints with one scale per tensor or "
         "per channel are not supported (block scales, as DeepSeek-V3's [128, 128])");
  if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() || !(*b)[1].is_number_integer() ||
      (*b)[0].get<int64_t>() < 1 || (*b)[1].get<int64_t>() < 1 || (*b)[0].get<int64_t>() > (1 << 20) ||
      (*b)[1].get<int64_t>() > (1 << 20))
    fail("config.json: quantization_config.weight_block_size must be two positive integers [rows, cols], got {}",
         b->dump());
  c.fp8_block_rows = (*b)[0].get<int64_t>();
  c.fp8_block_cols = (*b)[1].get<int64_t>();
}

void attach_fp8_scales(const ModelConfig& c, WeightStore& store) {
  std::vector<std::string> weights;
  for (const auto& [name, t] : store.all()) {
    if (t.dtype == DType::F8_E4M3) weights.push_back(name);
    // Per-tensor fp8 (vLLM's weight_scale) and static activation scales: formats read elsewhere.
    if (ends_with(name, ".weight_scale") || ends_with(name, ".input_scale"))
      fail("weights: tensor \"{}\" in {} belongs to an fp8 format dpserve does not read (per-tensor or static "
           "scales); fp8 checkpoints with block scales (weight_scale_inv) are read",
           name, t.file);
  }
  for (const std::string& name : weights) {
    const TensorInfo& t = store.get(name);
    if (c.fp8_block_rows < 1)
      fail("weights: tensor \"{}\" in {} is F8_E4M3, but config.json has no quantization_config with quant_method "
           "fp8 and weight_block_size",
           name, t.file);
    if (t.shape.size() != 2)
      fail("weights: tensor \"{}\" in {} is F8_E4M3 of shape {}; fp8 weights are read as 2-D matrices only", name,
           t.file, shape_text(t.shape));
    const std::string sname = name + kScaleSuffix;
    if (!store.has(sname))
      fail("weights: tensor \"{}\" in {} is F8_E4M3 but its scales \"{}\" are missing", name, t.file, sname);
    const TensorInfo& st = store.get(sname);
    const int64_t br = c.fp8_block_rows, bc = c.fp8_block_cols;
    const std::vector<int64_t> want = {(t.shape[0] + br - 1) / br, (t.shape[1] + bc - 1) / bc};
    if (st.shape != want)
      fail("weights: tensor \"{}\" in {} has shape {}; the scales of {} {} in {} x {} blocks (weight_block_size) "
           "need {}",
           sname, st.file, shape_text(st.shape), name, shape_text(t.shape), br, bc, shape_text(want));
    if (st.dtype != DType::F32 && st.dtype != DType::BF16 && st.dtype != DType::F16)
      fail("weights: tensor \"{}\" in {} is {}; block scales are F32, BF16 or F16", sname, st.file,
           dtype_name(st.dtype));
    std::vector<float> s(size_t(want[0] * want[1]));
    weight_row_to_f32(WeightView{st.data, st.dtype, 1, want[0] * want[1], want[0] * want[1]}, 0, s.data());
    for (float v : s)
      if (!std::isfinite(v))
        fail("weights: tensor \"{}\" in {} holds a scale that is not finite ({})", sname, st.file, v);
    TensorInfo w = t;
    w.fp8 = store.keep(Fp8BlockScales{nullptr, want[1], br, bc}, std::move(s));
    w.fp8_row0 = 0;
    store.add(name, std::move(w));
    store.remove(sname);
  }
  for (const auto& [name, t] : store.all())
    if (ends_with(name, kScaleSuffix))
      fail("weights: tensor \"{}\" in {} is a block scale whose weight \"{}\" is not F8_E4M3", name, t.file,
           name.substr(0, name.size() - std::string(kScaleSuffix).size()));
}

}  // namespace dpserve
