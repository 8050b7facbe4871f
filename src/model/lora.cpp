#include "model/lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/weight_store.h"

namespace fs = std::filesystem;

namespace dpserve {

namespace {

constexpr const char* kNames[kLoraModules] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

int module_index(const std::string& n) {
  for (int m = 0; m < kLoraModules; ++m)
    if (n == kNames[m]) return m;
  return -1;
}

bool is_attn(int m) { return m <= kLoraO; }

// The fields that change what PEFT computes and that this runtime does not do: present with a
// non-default value is an error, never silently ignored.
void refuse_unsupported(const nlohmann::json& j, const std::string& cfg) {
  auto truthy = [&](const char* k) { return j.contains(k) && j[k].is_boolean() && j[k].get<bool>(); };
  auto non_empty = [&](const char* k) {
    return j.contains(k) && !j[k].is_null() && !((j[k].is_object() || j[k].is_array()) && j[k].empty());
  };
  if (truthy("use_dora")) fail("{}: use_dora is true: DoRA adapters are not supported", cfg);
  if (truthy("fan_in_fan_out")) fail("{}: fan_in_fan_out is true: only nn.Linear (not Conv1D) adapters are supported", cfg);
  if (j.contains("bias") && !(j["bias"].is_string() && j["bias"] == "none"))
    fail("{}: bias is {}: only \"none\" is supported (adapters that train biases are not)", cfg, j["bias"].dump());
  if (truthy("lora_bias")) fail("{}: lora_bias is true: adapters with a bias on lora_B are not supported", cfg);
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (non_empty(k)) fail("{}: {} is not empty: per-module ranks / alphas are not supported", cfg, k);
  if (non_empty("modules_to_save"))
    fail("{}: modules_to_save is {}: adapters that replace whole modules are not supported", cfg,
         j["modules_to_save"].dump());
  if (non_empty("exclude_modules")) fail("{}: exclude_modules is not supported", cfg);
  if (non_empty("target_parameters")) fail("{}: target_parameters is not supported", cfg);
}

}  // namespace

const char* lora_module_name(int m) { return kNames[m]; }

LoraAdapter load_lora_adapter(const std::string& dir, const LoraModelShape& shape) {
  LoraAdapter ad;
  ad.dir = dir;
  if (!fs::is_directory(dir)) fail("LoRA adapter {}: not a folder", dir);
  const std::string cfg = (fs::path(dir) / "adapter_config.json").string();
  const std::string st = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!fs::exists(cfg)) fail("LoRA adapter {}: no adapter_config.json", dir);
  if (!fs::exists(st)) fail("LoRA adapter {}: no adapter_model.safetensors", dir);
  nlohmann::json j;
  try {
    std::ifstream in(cfg);
    in >> j;
  } catch (const std::exception& e) {
    fail("{}: malformed JSON: {}", cfg, e.what());
  }
  if (!j.is_object()) fail("{}: not a JSON object", cfg);
  if (!j.contains("peft_type") || !j["peft_type"].is_string() || j["peft_type"] != "LORA")
    fail("{}: peft_type is {}, expected \"LORA\"", cfg, j.contains("peft_type") ? j["peft_type"].dump() : "missing");
  refuse_unsupported(j, cfg);

  // r and lora_alpha (PEFT's defaults 8 and 8), the scale alpha / r or alpha / sqrt(r).
  const nlohmann::json r_j = j.value("r", nlohmann::json(8)), a_j = j.value("lora_alpha", nlohmann::json(8));
  if (!r_j.is_number_integer() || r_j.get<int64_t>() < 1) fail("{}: r is {}, expected a positive integer", cfg, r_j.dump());
  if (!a_j.is_number()) fail("{}: lora_alpha is {}, expected a number", cfg, a_j.dump());
  ad.rank = r_j.get<int64_t>();
  const double alpha = a_j.get<double>();
  const bool rslora = j.contains("use_rslora") && j["use_rslora"].is_boolean() && j["use_rslora"].get<bool>();
  ad.scale = rslora ? alpha / std::sqrt(double(ad.rank)) : alpha / double(ad.rank);

  // target_modules: a list of module names, or "all-linear" (every linear layer but the LM head).
  if (!j.contains("target_modules") || j["target_modules"].is_null())
    fail("{}: target_modules is missing", cfg);
  const auto& tm = j["target_modules"];
  if (tm.is_string()) {
    if (tm != "all-linear")
      fail("{}: target_modules is the string {}: PEFT reads it as a regular expression, which is not supported "
           "(give a list of module names, or \"all-linear\")", cfg, tm.dump());
    if (shape.vision)
      fail("{}: target_modules \"all-linear\" on a vision-language model also targets the vision tower, which is "
           "not supported", cfg);
    ad.targets.fill(true);
  } else if (tm.is_array()) {
    for (const auto& t : tm) {
      if (!t.is_string()) fail("{}: target_modules holds {}, expected module names", cfg, t.dump());
      const std::string n = t.get<std::string>();
      const int m = module_index(n);
      if (m < 0)
        fail("{}: target_modules: module \"{}\" is not supported (LoRA applies to q_proj, k_proj, v_proj, o_proj, "
             "gate_proj, up_proj, down_proj of dense layers; not to embeddings, lm_head, MoE experts or routers)",
             cfg, n);
      ad.targets[size_t(m)] = true;
    }
  } else {
    fail("{}: target_modules is {}, expected a list or \"all-linear\"", cfg, tm.dump());
  }

  // layers_to_transform: an int or a list of layer indices (null: every layer).
  std::vector<bool> use_layer(size_t(shape.n_layers), true);
  if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null()) {
    const auto& lt = j["layers_to_transform"];
    std::vector<int64_t> ids;
    if (lt.is_number_integer()) ids.push_back(lt.get<int64_t>());
    else if (lt.is_array())
      for (const auto& v : lt) {
        if (!v.is_number_integer()) fail("{}: layers_to_transform holds {}, expected layer indices", cfg, v.dump());
        ids.push_back(v.get<int64_t>());
      }
    else fail("{}: layers_to_transform is {}, expected a layer index or a list of them", cfg, lt.dump());
    if (j.contains("layers_pattern") && !j["layers_pattern"].is_null() && j["layers_pattern"] != "layers" &&
        !(j["layers_pattern"].is_array() && j["layers_pattern"].size() == 1 && j["layers_pattern"][0] == "layers"))
      fail("{}: layers_pattern {} is not supported (only \"layers\")", cfg, j["layers_pattern"].dump());
    use_layer.assign(size_t(shape.n_layers), false);
    for (int64_t l : ids) {
      if (l < 0 || l >= shape.n_layers)
        fail("{}: layers_to_transform names layer {}, the model has {}", cfg, l, shape.n_layers);
      use_layer[size_t(l)] = true;
    }
  }

  // What this model cannot apply.
  for (int m = 0; m < kLoraModules; ++m) {
    if (!ad.targets[size_t(m)]) continue;
    if (is_attn(m) && shape.mla)
      fail("{}: target_modules: {} of multi-head latent attention (DeepSeek MLA projections) is not supported", cfg,
           kNames[m]);
    if (!is_attn(m))
      for (int64_t l = 0; l < shape.n_layers; ++l)
        if (use_layer[size_t(l)] && shape.layer_moe[size_t(l)])
          fail("{}: target_modules: {} of layer {}, a mixture-of-experts layer (MoE experts are not supported)", cfg,
               kNames[m], l);
  }

  // The tensors: base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight.
  WeightStore store;
  load_safetensors_file(st, store);
  std::set<std::string> expected;
  auto tensor_name = [](int64_t l, int m, char ab) {
    return "base_model.model.model.layers." + std::to_string(l) + (is_attn(m) ? ".self_attn." : ".mlp.") + kNames[m] +
           ".lora_" + ab + ".weight";
  };
  ad.layers.resize(size_t(shape.n_layers));
  for (int64_t l = 0; l < shape.n_layers; ++l) {
    if (!use_layer[size_t(l)]) continue;
    for (int m = 0; m < kLoraModules; ++m) {
      if (!ad.targets[size_t(m)]) continue;
      const LoraSlice& s = shape.slice[size_t(m)];
      const std::string na = tensor_name(l, m, 'A'), nb = tensor_name(l, m, 'B');
      expected.insert(na);
      expected.insert(nb);
      for (const auto& n : {na, nb})
        if (!store.has(n)) fail("LoRA adapter {}: tensor \"{}\" is missing from adapter_model.safetensors", dir, n);
      const TensorInfo& ta = store.get(na);
      const TensorInfo& tb = store.get(nb);
      const std::vector<int64_t> want_a{ad.rank, s.in_full}, want_b{s.out_full, ad.rank};
      if (ta.shape != want_a)
        fail("LoRA adapter {}: tensor \"{}\" has shape {}, expected {} ([r, in])", dir, na, shape_text(ta.shape),
             shape_text(want_a));
      if (tb.shape != want_b)
        fail("LoRA adapter {}: tensor \"{}\" has shape {}, expected {} ([out, r])", dir, nb, shape_text(tb.shape),
             shape_text(want_b));
      LoraProj& p = ad.layers[size_t(l)][size_t(m)];
      p.r = ad.rank;
      const WeightView va{ta.data, ta.dtype, ad.rank, s.in_full, s.in_full};
      const WeightView vb{tb.data, tb.dtype, s.out_full, ad.rank, ad.rank};
      p.a.resize(size_t(ad.rank * s.in_n));
      for (int64_t i = 0; i < ad.rank; ++i)
        for (int64_t c = 0; c < s.in_n; ++c) p.a[size_t(i * s.in_n + c)] = va.at(i, s.in0 + c);
      p.b.resize(size_t(s.out_n * ad.rank));
      for (int64_t o = 0; o < s.out_n; ++o)
        for (int64_t i = 0; i < ad.rank; ++i) p.b[size_t(o * ad.rank + i)] = float(ad.scale * double(vb.at(s.out0 + o, i)));
      ad.bytes += int64_t(sizeof(float) * (p.a.size() + p.b.size()));
    }
  }
  for (const auto& [n, t] : store.all())
    if (!expected.count(n))
      fail("LoRA adapter {}: unexpected tensor \"{}\" in adapter_model.safetensors (not a lora_A / lora_B of a module "
           "target_modules and layers_to_transform name)", dir, n);
  return ad;
}

}  // namespace dpserve
