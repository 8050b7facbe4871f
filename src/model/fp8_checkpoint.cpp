#include "model/fp8_checkpoint.h"

#include <cmath>
#include <initializer_list>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "kernels/matmul.h"

namespace dpserve {

namespace {

// A block as long as any matrix: compressed-tensors' one scale per output row, or per tensor.
constexpr int64_t kWhole = int64_t(1) << 40;

std::string text(const nlohmann::json& o, const char* key) {
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool null_or_absent(const nlohmann::json& o, const char* key) {
  const auto it = o.find(key);
  return it == o.end() || it->is_null();
}

// [rows, cols] of a weight_block_size / block_structure value, or a start-up error naming `field`.
std::pair<int64_t, int64_t> block_size(const nlohmann::json& b, const std::string& field) {
  if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
      b[0].get<int64_t>() < 1 || b[1].get<int64_t>() < 1 || b[0].get<int64_t>() > (1 << 20) ||
      b[1].get<int64_t>() > (1 << 20))
    fail("config.json: {} must be two positive integers [rows, cols], got {}", field, b.dump());
  return {b[0].get<int64_t>(), b[1].get<int64_t>()};
}

void only_keys(const nlohmann::json& o, std::initializer_list<const char*> keys, const std::string& where) {
  for (const auto& [key, v] : o.items()) {
    bool known = false;
    for (const char* k : keys) known = known || key == k;
    if (!known) {
      std::string list;
      for (const char* k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
      fail("config.json: {}.{} is not supported (dpserve reads {})", where, key, list);
    }
  }
}

// quant_method "fp8": DeepSeek-V3's layout.
void read_fp8(const nlohmann::json& q, ModelConfig& c) {
  only_keys(q, {"quant_method", "fmt", "activation_scheme", "weight_block_size", "modules_to_not_convert",
                "ignored_layers"},
            "quantization_config");
  if (q.contains("fmt")) {
    const std::string fmt = text(q, "fmt");
    if (fmt != "e4m3" && fmt != "float8_e4m3fn")
      fail("config.json: quantization_config.fmt \"{}\" is not supported (e4m3)", fmt);
  }
  // Static schemes carry per-tensor input scales for fp8 activations on a GPU; dpserve's activations
  // stay fp32 / bf16, so a calibrated scale would be silently unused.
  if (q.contains("activation_scheme") && text(q, "activation_scheme") != "dynamic")
    fail("config.json: quantization_config.activation_scheme \"{}\" is not supported (dynamic)",
         text(q, "activation_scheme"));
  if (null_or_absent(q, "weight_block_size"))
    fail("config.json: quantization_config has no weight_block_size: fp8 checkpoints with one scale per tensor or "
         "per channel are read in the compressed-tensors layout only (block scales, as DeepSeek-V3's [128, 128])");
  std::tie(c.fp8_block_rows, c.fp8_block_cols) = block_size(q["weight_block_size"], "quantization_config.weight_block_size");
}

// quant_method "compressed-tensors" with float-quantized (fp8) weights: llm-compressor's layout.
void read_compressed_tensors(const nlohmann::json& q, ModelConfig& c) {
  const std::string where = "quantization_config";
  only_keys(q, {"quant_method", "format", "config_groups", "ignore", "quantization_status", "kv_cache_scheme",
                "global_compression_ratio", "sparsity_config", "transform_config", "version", "provider"},
            where);
  if (q.contains("format") && text(q, "format") != "float-quantized")
    fail("config.json: {}.format \"{}\" is not supported: of compressed-tensors, dpserve reads fp8 weights "
         "(float-quantized); load the bf16 release, with --quantization to quantize it", where, text(q, "format"));
  if (q.contains("quantization_status") && text(q, "quantization_status") != "compressed")
    fail("config.json: {}.quantization_status \"{}\" is not supported (compressed)", where,
         text(q, "quantization_status"));
  if (!null_or_absent(q, "kv_cache_scheme"))
    fail("config.json: {}.kv_cache_scheme is not supported: calibrated KV-cache scales (dpserve quantizes its "
         "cache itself, --kv-cache-dtype)", where);
  for (const char* k : {"sparsity_config", "transform_config"})
    if (!null_or_absent(q, k) && !(q[k].is_object() && q[k].empty()))
      fail("config.json: {}.{} is not supported", where, k);
  const auto groups = q.find("config_groups");
  if (groups == q.end() || !groups->is_object() || groups->empty())
    fail("config.json: {}.config_groups is missing or empty", where);
  std::string strategy;
  std::pair<int64_t, int64_t> block{0, 0};
  for (const auto& [name, g] : groups->items()) {
    const std::string gw = where + ".config_groups." + name;
    if (!g.is_object()) fail("config.json: {} is not an object", gw);
    only_keys(g, {"targets", "weights", "input_activations", "output_activations", "format"}, gw);
    if (g.contains("format") && text(g, "format") != "float-quantized")
      fail("config.json: {}.format \"{}\" is not supported (float-quantized: fp8 weights)", gw, text(g, "format"));
    if (!g.contains("weights") || !g["weights"].is_object()) fail("config.json: {}.weights is missing", gw);
    const nlohmann::json& w = g["weights"];
    const std::string ww = gw + ".weights";
    only_keys(w, {"num_bits", "type", "symmetric", "dynamic", "strategy", "block_structure", "group_size", "actorder",
                  "observer", "observer_kwargs", "scale_dtype", "zp_dtype"},
              ww);
    if (!w.contains("num_bits") || w["num_bits"] != 8 || text(w, "type") != "float")
      fail("config.json: {}: {}-bit {} weights are not supported (8-bit float: fp8)", ww,
           w.contains("num_bits") ? w["num_bits"].dump() : "?", text(w, "type"));
    if (w.contains("symmetric") && w["symmetric"] != true)
      fail("config.json: {}.symmetric false is not supported (fp8 weights without zero points)", ww);
    if (w.contains("dynamic") && w["dynamic"] != false)
      fail("config.json: {}.dynamic is not supported: the weights' scales must be stored", ww);
    if (!null_or_absent(w, "actorder")) fail("config.json: {}.actorder is not supported", ww);
    const std::string st = text(w, "strategy");
    std::pair<int64_t, int64_t> b;
    if (st == "channel") {
      b = {1, kWhole};
    } else if (st == "tensor") {
      b = {kWhole, kWhole};
    } else if (st == "block") {
      if (null_or_absent(w, "block_structure")) fail("config.json: {}.block_structure is missing", ww);
      b = block_size(w["block_structure"], ww + ".block_structure");
    } else {
      fail("config.json: {}.strategy \"{}\" is not supported (channel, tensor or block)", ww, st);
    }
    if (st != "block" && !null_or_absent(w, "block_structure"))
      fail("config.json: {}.block_structure is set, but the strategy is {}", ww, st);
    if (!null_or_absent(w, "group_size")) fail("config.json: {}.group_size is not supported (strategy {})", ww, st);
    if (!strategy.empty() && (st != strategy || b != block))
      fail("config.json: {}: config groups with different weight scales ({} and {}) are not supported", gw,
           strategy, st);
    strategy = st;
    block = b;
    // Static input scales are calibrated for fp8 activations on a GPU; dpserve's activations stay fp32 /
    // bf16, so they would be silently unused.
    if (!null_or_absent(g, "input_activations")) {
      const nlohmann::json& a = g["input_activations"];
      if (!a.is_object() || !a.contains("dynamic") || a["dynamic"] != true)
        fail("config.json: {}.input_activations with static scales (dynamic false) are not supported (dynamic, or "
             "none)", gw);
    }
    if (!null_or_absent(g, "output_activations")) fail("config.json: {}.output_activations is not supported", gw);
  }
  c.fp8_compressed_tensors = true;
  std::tie(c.fp8_block_rows, c.fp8_block_cols) = block;
}

// What one scale covers, for messages.
std::string block_text(int64_t rows, int64_t cols) {
  if (rows == kWhole) return "one scale per tensor";
  if (cols == kWhole) return "one scale per row";
  return fmt::format("{} x {} blocks", rows, cols);
}

std::vector<int64_t> squeezed(const std::vector<int64_t>& s) {
  std::vector<int64_t> out;
  for (int64_t d : s)
    if (d != 1) out.push_back(d);
  return out;
}

}  // namespace

void read_quantization_config(const nlohmann::json& config, ModelConfig& c) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || it->is_null()) return;
  const nlohmann::json& q = *it;
  if (!q.is_object()) fail("config.json: quantization_config is not an object");
  const std::string method = text(q, "quant_method");
  if (c.arch == Arch::GptOss && method == "mxfp4") return;  // its experts' format (model/gpt_oss_experts.h)
  if (method == "fp8") return read_fp8(q, c);
  if (method == "compressed-tensors") return read_compressed_tensors(q, c);
  fail("config.json: quantization_config.quant_method \"{}\" is not supported: dpserve loads bf16 / f16 / f32 "
       "folders, fp8 checkpoints (quant_method fp8 with block scales, as DeepSeek-V3 and the Qwen3 FP8 releases; "
       "compressed-tensors float-quantized), gpt-oss's mxfp4 and GGUF files; load the bf16 release with "
       "--quantization q8_0 / q4_k_m to quantize it",
       method);
}

void attach_fp8_scales(const ModelConfig& c, WeightStore& store) {
  const std::string suffix = c.fp8_compressed_tensors ? "_scale" : "_scale_inv";
  std::vector<std::string> weights;
  for (const auto& [name, t] : store.all()) {
    if (t.dtype == DType::F8_E4M3) weights.push_back(name);
    // Static activation scales, zero points, and per-tensor scales outside compressed-tensors' layout.
    if (name.ends_with(".input_scale") || name.ends_with("_zero_point") ||
        (!c.fp8_compressed_tensors && name.ends_with(".weight_scale")))
      fail("weights: tensor \"{}\" in {} belongs to a quantized format dpserve does not read (static activation "
           "scales, zero points, or scales its config.json does not describe)",
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
    const std::string sname = name + suffix;
    if (!store.has(sname))
      fail("weights: tensor \"{}\" in {} is F8_E4M3 but its scales \"{}\" are missing", name, t.file, sname);
    const TensorInfo& st = store.get(sname);
    const int64_t br = c.fp8_block_rows, bc = c.fp8_block_cols;
    const std::vector<int64_t> want = {(t.shape[0] + br - 1) / br, (t.shape[1] + bc - 1) / bc};
    // A scale per row or per tensor may come as [rows] or [1] / [] too: the same values in the same order.
    if (st.shape != want && squeezed(st.shape) != squeezed(want))
      fail("weights: tensor \"{}\" in {} has shape {}; {} {} with {} needs {}", sname, st.file,
           shape_text(st.shape), name, shape_text(t.shape), block_text(br, bc), shape_text(want));
    if (st.dtype != DType::F32 && st.dtype != DType::BF16 && st.dtype != DType::F16)
      fail("weights: tensor \"{}\" in {} is {}; block scales are F32, BF16 or F16", sname, st.file,
           dtype_name(st.dtype));
    std::vector<float> s(size_t(want[0] * want[1]));
    weight_row_to_f32(WeightView{st.data, st.dtype, 1, want[0] * want[1], want[0] * want[1], nullptr, 0, 0}, 0,
                      s.data());
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
    if (name.ends_with(".weight" + suffix))
      fail("weights: tensor \"{}\" in {} is a weight scale whose weight \"{}\" is not F8_E4M3", name, t.file,
           name.substr(0, name.size() - suffix.size()));
}

}  // namespace dpserve
