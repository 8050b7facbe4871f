// An image as it travels from the frontend to the ranks: decoded, converted to RGB and resized
// once on rank 0 ("materialized"), then carried in the step's control message to the ranks that
// run the request. The ranks turn it into the vision tower's patch rows (image_patches) — a cheap,
// exact pass — so the message carries 3 bytes per pixel instead of 2 x 4 x 3 floats.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dpserve {

// The image processor's settings, read from the model folder's preprocessor_config.json
// (Qwen2-VL / Qwen2.5-VL's Qwen2VLImageProcessor keys; missing keys take that processor's defaults).
struct ImagePreprocessConfig {
  int32_t patch_size = 14;          // spatial patch edge in pixels
  int32_t temporal_patch_size = 2;  // frames per patch (an image is repeated to fill them)
  int32_t merge_size = 2;           // merge_size x merge_size patches become one LM token
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  std::array<float, 3> image_mean{0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> image_std{0.26862954f, 0.26130258f, 0.27577711f};

  // Edge multiple every resized image has: patch_size * merge_size.
  int32_t factor() const { return patch_size * merge_size; }
  // Reads `<dir>/preprocessor_config.json`; a missing file gives the defaults above, a malformed
  // one (wrong types, non-positive sizes, min_pixels > max_pixels) is a dpserve::Error naming the key.
  static ImagePreprocessConfig load(const std::string& model_dir);
  // Every setting as text (floats exact): an image's cached KV depends on all of them, so the
  // --kv-cache-dir identity compares it.
  std::string describe() const;
};

// The prompt tokens that frame an image (config.json's image_token_id, vision_start_token_id,
// vision_end_token_id). A prompt names each image with one <|image_pad|>; the frontend expands it
// to ImageInput::tokens() copies, so the ranks find image k's rows as the k-th run of image_pad.
struct VisionTokenIds {
  int32_t image_pad = -1;
  int32_t vision_start = -1;
  int32_t vision_end = -1;

  bool takes_images() const { return image_pad >= 0; }
  // From `<dir>/config.json`: all -1 for a model whose images dpserve does not take (no vision_config,
  // or a tower it does not run: Gemma 3's, served for text only).
  static VisionTokenIds load(const std::string& model_dir);
};

// One materialized image: RGB, 8 bits per channel, row-major [height][width][3], already resized
// so both edges are multiples of ImagePreprocessConfig::factor().
struct ImageInput {
  int32_t height = 0;
  int32_t width = 0;
  std::vector<uint8_t> rgb;
  // Content hash of the encoded file (image_content_hash: SHA-256, 64 bits): the prefix cache keys the
  // image's tokens by it, so equal images share cached KV and different ones never do.
  uint64_t hash = 0;

  int32_t grid_h(const ImagePreprocessConfig& c) const { return height / c.patch_size; }
  int32_t grid_w(const ImagePreprocessConfig& c) const { return width / c.patch_size; }
  // Patch rows the vision tower sees (grid_t = 1 for a still image).
  int64_t patches(const ImagePreprocessConfig& c) const { return int64_t(grid_h(c)) * grid_w(c); }
  // LM tokens the image becomes: one <|image_pad|> each in the prompt.
  int64_t tokens(const ImagePreprocessConfig& c) const {
    return patches(c) / (int64_t(c.merge_size) * c.merge_size);
  }
};

// The vision tower's input rows for one image, as Qwen2VLImageProcessor emits pixel_values:
// rescaled to [0, 1], normalized by image_mean / image_std, the frame repeated temporal_patch_size
// times, cut into patches and ordered so each merge_size x merge_size block of patches is
// consecutive (row-major blocks, row-major patches inside a block). Each row holds
// channel x temporal x patch_size x patch_size values in that order.
// Returns patches(c) rows of 3 * temporal_patch_size * patch_size^2 floats.
std::vector<float> image_patches(const ImageInput& img, const ImagePreprocessConfig& c);

}  // namespace dpserve
