#include "vision/image_input.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace dpserve {

namespace {

int64_t positive_int(const nlohmann::json& j, const char* key, int64_t def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const auto& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    fail("preprocessor_config.json: {} must be a positive integer", key);
  return v.get<int64_t>();
}

std::array<float, 3> triple(const nlohmann::json& j, const char* key, std::array<float, 3> def,
                            bool positive) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const auto& v = j[key];
  if (!v.is_array() || v.size() != 3) fail("preprocessor_config.json: {} must be 3 numbers", key);
  std::array<float, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    if (!v[i].is_number()) fail("preprocessor_config.json: {} must be 3 numbers", key);
    out[i] = v[i].get<float>();
    if (positive && !(out[i] > 0)) fail("preprocessor_config.json: {} must be positive", key);
  }
  return out;
}

}  // namespace

std::string ImagePreprocessConfig::describe() const {
  return fmt::format("patch {} temporal {} merge {} pixels {}..{} mean {:.9g} {:.9g} {:.9g} std {:.9g} {:.9g} {:.9g}",
                     patch_size, temporal_patch_size, merge_size, min_pixels, max_pixels, image_mean[0], image_mean[1],
                     image_mean[2], image_std[0], image_std[1], image_std[2]);
}

ImagePreprocessConfig ImagePreprocessConfig::load(const std::string& model_dir) {
  ImagePreprocessConfig c;
  const auto path = std::filesystem::path(model_dir) / "preprocessor_config.json";
  if (!std::filesystem::exists(path)) return c;
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) fail("{}: not a JSON object", path.string());
  c.patch_size = int32_t(positive_int(j, "patch_size", c.patch_size));
  c.temporal_patch_size = int32_t(positive_int(j, "temporal_patch_size", c.temporal_patch_size));
  c.merge_size = int32_t(positive_int(j, "merge_size", c.merge_size));
  // Newer processors spell the pixel bounds as size.shortest_edge / size.longest_edge.
  if (j.contains("size") && j["size"].is_object()) {
    c.min_pixels = positive_int(j["size"], "shortest_edge", c.min_pixels);
    c.max_pixels = positive_int(j["size"], "longest_edge", c.max_pixels);
  }
  c.min_pixels = positive_int(j, "min_pixels", c.min_pixels);
  c.max_pixels = positive_int(j, "max_pixels", c.max_pixels);
  if (c.min_pixels > c.max_pixels)
    fail("preprocessor_config.json: min_pixels {} is above max_pixels {}", c.min_pixels, c.max_pixels);
  c.image_mean = triple(j, "image_mean", c.image_mean, false);
  c.image_std = triple(j, "image_std", c.image_std, true);
  return c;
}

VisionTokenIds VisionTokenIds::load(const std::string& model_dir) {
  VisionTokenIds ids;
  const auto path = std::filesystem::path(model_dir) / "config.json";
  if (!std::filesystem::is_regular_file(path)) return ids;  // a llama2.c file or a GGUF: no images
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("vision_config")) return ids;
  // A tower dpserve runs (Qwen2.5-VL); Gemma 3's multimodal checkpoints are served for text only.
  const auto arch = j.find("architectures");
  if (arch == j.end() || !arch->is_array() || arch->empty() || (*arch)[0] != "Qwen2_5_VLForConditionalGeneration")
    return ids;
  auto id = [&](const char* key) -> int32_t {
    if (!j.contains(key)) fail("{}: vision model without {}", path.string(), key);
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0)
      fail("{}: {} must be a token id", path.string(), key);
    return int32_t(j[key].get<int64_t>());
  };
  ids.image_pad = id("image_token_id");
  ids.vision_start = id("vision_start_token_id");
  ids.vision_end = id("vision_end_token_id");
  return ids;
}

std::vector<float> image_patches(const ImageInput& img, const ImagePreprocessConfig& c) {
  const int ps = c.patch_size, m = c.merge_size, tp = c.temporal_patch_size;
  DP_CHECK(img.height > 0 && img.width > 0 && img.height % c.factor() == 0 &&
               img.width % c.factor() == 0,
           "image {}x{} is not a multiple of {}", img.height, img.width, c.factor());
  DP_CHECK(img.rgb.size() == size_t(img.height) * img.width * 3);
  const int gh = img.height / ps, gw = img.width / ps;
  const int64_t row_len = int64_t(3) * tp * ps * ps;
  std::vector<float> out(size_t(gh) * gw * row_len);
  // Per channel and byte value: (v / 255 - mean) / std, computed once.
  float lut[3][256];
  for (int ch = 0; ch < 3; ++ch)
    for (int v = 0; v < 256; ++v)
      lut[ch][v] = float((double(v) / 255.0 - c.image_mean[ch]) / c.image_std[ch]);
  int64_t row = 0;
  for (int bh = 0; bh < gh / m; ++bh)
    for (int bw = 0; bw < gw / m; ++bw)
      for (int mh = 0; mh < m; ++mh)
        for (int mw = 0; mw < m; ++mw, ++row) {
          const int y0 = (bh * m + mh) * ps, x0 = (bw * m + mw) * ps;
          float* dst = &out[size_t(row * row_len)];
          for (int ch = 0; ch < 3; ++ch)
            for (int t = 0; t < tp; ++t)  // a still image fills every frame of the patch
              for (int y = 0; y < ps; ++y) {
                const uint8_t* src = &img.rgb[(size_t(y0 + y) * img.width + x0) * 3 + ch];
                for (int x = 0; x < ps; ++x) *dst++ = lut[ch][src[x * 3]];
              }
        }
  return out;
}

}  // namespace dpserve
