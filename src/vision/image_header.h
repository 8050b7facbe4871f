// What a JPEG or PNG file says about itself before any pixel is decoded: its format and size (the
// JPEG frame header, the PNG IHDR chunk), and from them what decoding it will cost in memory. The
// server judges images by these (pixel budget, prompt tokens after smart_resize, decode memory)
// before it decodes any, so a small file whose header claims a huge image costs nothing.
#pragma once

#include <cstdint>
#include <string_view>

#include "vision/image_decode.h"
#include "vision/image_input.h"

namespace dpserve {

struct ImageHeader {
  ImageFormat format = ImageFormat::kUnknown;
  int64_t width = 0;
  int64_t height = 0;
  int components = 3;        // JPEG: colour components in the frame; PNG: samples per pixel
  bool progressive = false;  // JPEG: progressive (the decoder keeps every coefficient of the image)
  bool multi_scan = false;   // JPEG: a first scan without every component (the decoder keeps them too)
  int bit_depth = 8;         // PNG: bits per sample
};

// Reads the header only (JPEG: the markers up to the first frame header; PNG: the signature and
// IHDR). A file that is not JPEG/PNG, ends before its frame header, or has a zero size is a
// dpserve::Error, worded as decode_image words it.
ImageHeader read_image_header(std::string_view data);

// Bytes held at the peak of materialize_image for this image when it is resized to out_height x
// out_width: the decoded RGB (PNG 16-bit grayscale: plus its 2-byte samples), a progressive or
// multi-scan JPEG's coefficient buffer (2 bytes per component sample), and the resize's
// intermediate and output.
int64_t decode_peak_bytes(const ImageHeader& h, int64_t out_height, int64_t out_width);

}  // namespace dpserve
