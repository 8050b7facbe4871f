#include "vision/image_header.h"

#include <algorithm>
#include <optional>

#include "core/check.h"

namespace dpserve {

namespace {

uint32_t be16(const unsigned char* p) { return (uint32_t(p[0]) << 8) | p[1]; }
uint32_t be32(const unsigned char* p) { return (be16(p) << 16) | be16(p + 2); }

ImageHeader jpeg_header(std::string_view data) {
  const auto* d = reinterpret_cast<const unsigned char*>(data.data());
  const size_t n = data.size();
  size_t at = 2;  // after SOI
  std::optional<ImageHeader> frame;
  for (;;) {
    // A marker is 0xFF (any number of fill 0xFF) and a non-zero code. Stray bytes before it, and
    // 0xFF 0x00 pairs, are skipped as libjpeg skips them (with a warning; Pillow too): a file both
    // decode is not refused here, and the frame header found is the one libjpeg reads.
    while (at < n && d[at] != 0xFF) ++at;
    if (at >= n && frame) return *frame;  // what follows is the decoder's to refuse
    if (at >= n) fail("bad JPEG image: no frame header (SOF) before the data ends");
    while (at < n && d[at] == 0xFF) ++at;
    if (at >= n && frame) return *frame;
    if (at >= n) fail("bad JPEG image: truncated data");
    const unsigned char m = d[at++];
    if (m == 0x00 || m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // no marker, or no length
    if (frame && (m == 0xD9 || m == 0xDA || at + 2 > n)) {
      // The first scan: one with fewer components than the frame makes libjpeg keep the whole
      // image's coefficients until the last scan, as for a progressive file (jdinput.c,
      // has_multiple_scans), so the decode budget must count them.
      if (m == 0xDA && at + 3 <= n && be16(d + at) >= 3) frame->multi_scan = d[at + 2] < frame->components;
      return *frame;
    }
    if (m == 0xD9 || m == 0xDA) fail("bad JPEG image: no frame header (SOF) before the image data");
    if (at + 2 > n) fail("bad JPEG image: truncated data");
    const uint32_t len = be16(d + at);
    const bool sof = (m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof && !frame) {
      if (len < 8 || at + 8 > n) fail("bad JPEG image: truncated frame header");
      ImageHeader h;
      h.format = ImageFormat::kJpeg;
      h.height = be16(d + at + 3);
      h.width = be16(d + at + 5);
      h.components = d[at + 7];
      h.progressive = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
      if (h.width == 0 || h.height == 0)
        fail("JPEG image has a zero size ({}x{})", h.width, h.height);  // a DNL-defined height included
      frame = h;
    }
    // A length below 2 (it counts its own two bytes) is read as 2, as libjpeg reads it: the markers
    // it skips go on right after the length, the tables it parses fail the decode.
    at += std::max<uint32_t>(len, 2);
  }
}

ImageHeader png_header(std::string_view data) {
  // signature (8), IHDR length (4), "IHDR", width (4), height (4), bit depth, colour type
  if (data.size() < 26) fail("bad PNG image: truncated data");
  const auto* d = reinterpret_cast<const unsigned char*>(data.data());
  require_png_ihdr_first(data);
  ImageHeader h;
  h.format = ImageFormat::kPng;
  h.width = be32(d + 16);
  h.height = be32(d + 20);
  h.bit_depth = d[24];
  const int colour = d[25];
  h.components = colour == 0 ? 1 : colour == 4 ? 2 : colour == 6 ? 4 : 3;
  if (h.width == 0 || h.height == 0) fail("PNG image has a zero size ({}x{})", h.width, h.height);
  if (h.width > 0x7fffffff || h.height > 0x7fffffff)
    fail("bad PNG image: a size of {}x{} (PNG sizes are below 2^31)", h.width, h.height);
  return h;
}

}  // namespace

ImageHeader read_image_header(std::string_view data) {
  if (data.empty()) fail("image is empty");
  switch (sniff_image_format(data)) {
    case ImageFormat::kJpeg: return jpeg_header(data);
    case ImageFormat::kPng: return png_header(data);
    default: break;
  }
  if (data.size() >= 4 && data.substr(0, 4) == "GIF8") fail("GIF images are not supported (send JPEG or PNG)");
  fail("image is not a JPEG or PNG file (unrecognized first bytes)");
}

int64_t decode_peak_bytes(const ImageHeader& h, int64_t out_height, int64_t out_width) {
  const int64_t pixels = h.width * h.height;
  int64_t extra = 0;  // held beside the RGB while decoding
  if (h.format == ImageFormat::kPng && h.bit_depth == 16 && h.components == 1) extra = 2 * pixels;
  if (h.format == ImageFormat::kJpeg && (h.progressive || h.multi_scan)) extra = 2 * pixels * h.components;
  const int64_t decoded = 3 * pixels;
  // The resize: the horizontal pass writes height x out_width beside the decoded image (freed
  // after it), the vertical pass out_height x out_width beside the pass before it.
  const bool horizontal = out_width != h.width;
  const int64_t after_h = horizontal ? 3 * h.height * out_width : decoded;
  const int64_t output = 3 * out_height * out_width;
  const int64_t peak = std::max({decoded + extra, horizontal ? decoded + after_h : 0, after_h + output});
  return peak + output / 8 + (64 << 10);  // the taps, row buffers and decoder state, roughly
}

}  // namespace dpserve
