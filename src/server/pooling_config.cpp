#include "server/pooling_config.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) fail("--is-embedding: cannot read {}", p.string());
  try {
    return json::parse(in);
  } catch (const std::exception& e) {
    fail("--is-embedding: {} is not valid JSON: {}", p.string(), e.what());
  }
}

Pooling pooling_of(const json& cfg, const std::string& file) {
  // sentence-transformers' Pooling config: exactly one mode on for the models dpserve serves.
  const std::pair<const char*, Pooling> known[] = {{"pooling_mode_lasttoken", Pooling::kLast},
                                                   {"pooling_mode_mean_tokens", Pooling::kMean},
                                                   {"pooling_mode_cls_token", Pooling::kCls}};
  std::vector<Pooling> on;
  for (const auto& [key, mode] : known)
    if (cfg.value(key, false)) on.push_back(mode);
  for (const char* other : {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens"})
    if (cfg.value(other, false)) fail("--is-embedding: {} asks for {}, which dpserve does not implement (give --pooling)", file, other);
  if (on.size() != 1)
    fail("--is-embedding: {} turns on {} pooling modes; dpserve needs exactly one of lasttoken / mean_tokens / cls_token "
         "(or give --pooling)", file, on.size());
  return on[0];
}

}  // namespace

EmbeddingConfig load_embedding_config(const std::string& model_dir, const std::string& pooling_flag,
                                      const std::string& normalize_flag) {
  EmbeddingConfig c;
  c.enabled = true;
  const fs::path dir = fs::is_directory(model_dir) ? fs::path(model_dir) : fs::path(model_dir).parent_path();
  std::string pool_from = "default (last token, as SGLang's decoder embedding models)";
  std::string norm_from = "default (no modules.json)";
  const fs::path modules = dir / "modules.json";
  if (fs::exists(modules)) {
    const json m = read_json(modules);
    if (!m.is_array()) fail("--is-embedding: {} is not a list of modules", modules.string());
    bool normalize = false;
    for (const json& mod : m) {
      const std::string type = mod.value("type", "");
      if (type.find("Pooling") != std::string::npos) {
        const fs::path pc = dir / mod.value("path", "") / "config.json";
        c.pooling = pooling_of(read_json(pc), pc.string());
        pool_from = pc.string();
      } else if (type.find("Normalize") != std::string::npos) {
        normalize = true;
      }
    }
    c.normalize = normalize;
    norm_from = modules.string();
  }
  if (pooling_flag == "last") c.pooling = Pooling::kLast;
  else if (pooling_flag == "mean") c.pooling = Pooling::kMean;
  else if (pooling_flag == "cls") c.pooling = Pooling::kCls;
  else if (pooling_flag != "auto") fail("--pooling must be auto, last, mean or cls, got '{}'", pooling_flag);
  if (pooling_flag != "auto") pool_from = "--pooling";
  if (normalize_flag == "true") c.normalize = true;
  else if (normalize_flag == "false") c.normalize = false;
  else if (normalize_flag != "auto") fail("--normalize-embeddings must be auto, true or false, got '{}'", normalize_flag);
  if (normalize_flag != "auto") norm_from = "--normalize-embeddings";
  const fs::path config = dir / "config.json";
  if (fs::exists(config)) {
    const json cfg = read_json(config);
    if (cfg.value("is_matryoshka", false)) c.matryoshka = true;
    if (auto it = cfg.find("matryoshka_dimensions"); it != cfg.end() && it->is_array()) {
      c.matryoshka = true;
      for (const json& d : *it)
        if (d.is_number_integer() && d.get<int64_t>() > 0) c.matryoshka_dims.push_back(d.get<int64_t>());
    }
  }
  c.source = fmt::format("pooling {} from {}; normalize {} from {}; dimensions {}", to_string(c.pooling), pool_from,
                         c.normalize ? "on" : "off", norm_from,
                         c.matryoshka ? "accepted (config.json declares Matryoshka)" : "refused (not Matryoshka)");
  return c;
}

}  // namespace dpserve
