// Resizing an image the way Qwen2-VL's image processor does: smart_resize picks the target size
// (edges multiples of patch_size * merge_size, pixel count inside [min_pixels, max_pixels], aspect
// kept), and a bicubic resample that reproduces Pillow's Image.resize(size, BICUBIC) byte for byte
// (Hugging Face's Qwen2VLImageProcessor resizes the uint8 image with Pillow, so Pillow is the spec).
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "vision/image_input.h"

namespace dpserve {

// (height, width) Qwen2VLImageProcessor resizes an image of height x width to. An aspect ratio
// above 200 is a dpserve::Error, as the processor's ValueError.
std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor,
                                         int64_t min_pixels, int64_t max_pixels);

// Pillow's BICUBIC resample (cubic a = -0.5, support widened by the downscale factor; a horizontal
// pass then a vertical pass, each in 22-bit fixed point rounded and clipped to uint8). A pass whose
// size does not change is skipped, as Pillow does.
std::vector<uint8_t> resize_bicubic_rgb(std::vector<uint8_t> rgb, int32_t height,
                                        int32_t width, int32_t out_height, int32_t out_width);

// Limits on what a client may send, checked before the expensive work.
struct ImageLimits {
  int64_t max_decoded_pixels = int64_t(1) << 25;  // 32 Mi pixels (96 MiB as RGB)
};

// Where materialize_image's time went (seconds): decoding the file to RGB, and the rest (hash,
// smart_resize, bicubic resample) — the time to first token of an image request, split.
struct MaterializeTimes {
  double decode_s = 0;
  double preprocess_s = 0;
};

// Encoded JPEG/PNG bytes -> the ImageInput the ranks receive: decoded to RGB, resized by
// smart_resize + bicubic, hashed (image_content_hash of the encoded bytes). Bad input is a dpserve::Error.
// `times`, when given, gets the decode and preprocess times added.
ImageInput materialize_image(std::string_view bytes, const ImagePreprocessConfig& cfg,
                             const ImageLimits& limits, MaterializeTimes* times = nullptr);

// The image's identity in the prefix cache: the first 8 bytes of SHA-256(`bytes`), big-endian. A
// cryptographic hash, because the prefix cache shares an image's KV between requests: a client that
// could make another image with the same hash (easy for FNV or any non-cryptographic hash, with
// bytes that decoders skip) could have its KV served to other clients sending the original.
uint64_t image_content_hash(std::string_view bytes);

}  // namespace dpserve
