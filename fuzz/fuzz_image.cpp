// Image bytes as a client sends them (a data: URL's payload, or a downloaded body): the header read
// the server budgets by (src/vision/image_header.h), the libjpeg / libpng decode, and the resize to
// a Qwen2.5-VL grid. Bad files must give dpserve::Error; a file that decodes must have said its real
// size in its header, since pixels, prompt tokens and decode memory are all judged from the header
// before any decode (a file whose decode outgrows its header would slip past those budgets).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/check.h"
#include "fuzz_util.h"
#include "vision/image_decode.h"
#include "vision/image_header.h"
#include "vision/image_input.h"
#include "vision/image_resize.h"

namespace {

constexpr int64_t kMaxPixels = int64_t(1) << 20;  // keeps one input's decode near 3 MB

dpserve::ImagePreprocessConfig small_grid() {
  dpserve::ImagePreprocessConfig c;  // Qwen2.5-VL's patch and merge sizes, few tokens
  c.min_pixels = 28 * 28 * 4;
  c.max_pixels = 28 * 28 * 64;
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  dpserve::ImageHeader header;
  bool header_ok = true;
  try {
    header = dpserve::read_image_header(bytes);
  } catch (const dpserve::Error&) {
    header_ok = false;
  }
  if (header_ok) {
    FUZZ_EXPECT(header.format == dpserve::sniff_image_format(bytes));
    FUZZ_EXPECT(header.width > 0 && header.height > 0);
  }

  dpserve::DecodedImage d;
  try {
    d = dpserve::decode_image(bytes, kMaxPixels);
  } catch (const dpserve::Error&) {
    return 0;
  }
  FUZZ_EXPECT(d.width > 0 && d.height > 0 && int64_t(d.width) * d.height <= kMaxPixels);
  FUZZ_EXPECT(d.rgb.size() == size_t(d.width) * size_t(d.height) * 3);
  // What decoded was announced: the budgets saw this size.
  FUZZ_EXPECT(header_ok);
  FUZZ_EXPECT(header.width == d.width && header.height == d.height);

  const dpserve::ImagePreprocessConfig cfg = small_grid();
  int64_t out_h = 0, out_w = 0;
  try {
    std::tie(out_h, out_w) = dpserve::smart_resize(d.height, d.width, cfg.factor(), cfg.min_pixels, cfg.max_pixels);
  } catch (const dpserve::Error&) {
    return 0;  // an aspect ratio above 200, as the Hugging Face processor refuses
  }
  FUZZ_EXPECT(out_h > 0 && out_w > 0 && out_h % cfg.factor() == 0 && out_w % cfg.factor() == 0);
  // The decode budget holds at least the decoded RGB and the resized output.
  FUZZ_EXPECT(dpserve::decode_peak_bytes(header, out_h, out_w) >= 3 * (header.width * header.height + out_h * out_w));

  dpserve::ImageLimits limits;
  limits.max_decoded_pixels = kMaxPixels;
  const dpserve::ImageInput img = dpserve::materialize_image(bytes, cfg, limits);
  FUZZ_EXPECT(img.height == out_h && img.width == out_w);
  FUZZ_EXPECT(img.rgb.size() == size_t(out_h * out_w * 3));
  FUZZ_EXPECT(img.hash == dpserve::image_content_hash(bytes));
  const std::vector<float> rows = dpserve::image_patches(img, cfg);
  FUZZ_EXPECT(int64_t(rows.size()) ==
              img.patches(cfg) * 3 * cfg.temporal_patch_size * cfg.patch_size * cfg.patch_size);
  return 0;
}
