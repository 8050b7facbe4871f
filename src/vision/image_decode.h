// Encoded image bytes (JPEG or PNG, told apart by their magic bytes) -> 8-bit RGB, the way Pillow's
// Image.open(...).convert("RGB") sees them: grayscale replicated, palettes looked up, alpha dropped,
// 16-bit samples cut to their high byte. Bad input (truncated, zero-sized, over the size limit, not
// a JPEG or PNG) is a dpserve::Error; the size check reads only the header, before any large allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace dpserve {

struct DecodedImage {
  int32_t height = 0;
  int32_t width = 0;
  std::vector<uint8_t> rgb;  // [height][width][3]
};

enum class ImageFormat { kUnknown, kJpeg, kPng };

// The format named by the first bytes of `data` (JPEG: FF D8 FF; PNG: the 8-byte signature).
ImageFormat sniff_image_format(std::string_view data);

// PNG requires IHDR to be the first chunk (PNG 5.6); libpng does not. A PNG whose bytes 12-15 are
// not "IHDR" is a dpserve::Error ("IHDR is not the first chunk"). The header reader (which sizes
// the budgets) and the decoder both call it, so neither takes a file the other refuses.
void require_png_ihdr_first(std::string_view data);

// Scans a JPEG may have: each one costs a pass over the whole image, so a progressive JPEG of
// thousands of tiny scans would take minutes of CPU; past this it is refused (a dpserve::Error
// naming the limit) as the scan starts.
inline constexpr int kMaxJpegScans = 100;

// Decodes `data`; refuses images of more than `max_pixels` pixels from the header alone.
DecodedImage decode_image(std::string_view data, int64_t max_pixels);

}  // namespace dpserve
