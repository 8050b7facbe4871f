#include "server/lora_adapters.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {

namespace {

LoraAdapterPath parse_one(const std::string& v) {
  LoraAdapterPath a;
  bool named = false;
  if (!v.empty() && v.front() == '{') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(v);
    } catch (const std::exception& e) {
      fail("--lora-paths {}: not valid JSON ({})", v, e.what());
    }
    for (const auto& [k, x] : j.items()) {
      if (k == "lora_name" || k == "lora_path") {
        if (!x.is_string()) fail("--lora-paths {}: '{}' must be a string", v, k);
        (k == "lora_name" ? a.name : a.path) = x.get<std::string>();
      } else if (k == "pinned") {
        if (!x.is_boolean()) fail("--lora-paths {}: 'pinned' must be true or false", v);
      } else {
        fail("--lora-paths {}: unknown key '{}' (lora_name, lora_path and pinned are known)", v, k);
      }
    }
    if (a.path.empty()) fail("--lora-paths {}: 'lora_path' is required", v);
    named = j.contains("lora_name");
  } else if (const size_t eq = v.find('='); eq != std::string::npos) {
    a.name = v.substr(0, eq);
    a.path = v.substr(eq + 1);
    named = true;
  } else {
    a.path = v;
  }
  if (a.path.empty()) fail("--lora-paths {}: no adapter folder given", v);
  if (!named) {  // a bare path: the folder's name
    std::string p = a.path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    a.name = std::filesystem::path(p).filename().string();
  }
  if (a.name.empty()) fail("--lora-paths {}: the adapter has no name (give NAME=PATH)", v);
  return a;
}

}  // namespace

std::vector<LoraAdapterPath> parse_lora_paths(const std::vector<std::string>& values, const std::string& served_model_name) {
  std::vector<LoraAdapterPath> out;
  for (const std::string& v : values) {
    LoraAdapterPath a = parse_one(v);
    if (!std::filesystem::is_directory(a.path))
      fail("--lora-paths {}: adapter folder {} does not exist (or is not a folder)", v, a.path);
    if (a.name == served_model_name)
      fail("--lora-paths {}: the name '{}' is the served model's (--served-model-name): requests could not tell them "
           "apart",
           v, a.name);
    for (const LoraAdapterPath& b : out)
      if (b.name == a.name) fail("--lora-paths {}: the name '{}' is given twice", v, a.name);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace dpserve
