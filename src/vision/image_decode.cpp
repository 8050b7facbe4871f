#include "vision/image_decode.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "core/check.h"

namespace dpserve {

ImageFormat sniff_image_format(std::string_view d) {
  if (d.size() >= 3 && uint8_t(d[0]) == 0xFF && uint8_t(d[1]) == 0xD8 && uint8_t(d[2]) == 0xFF)
    return ImageFormat::kJpeg;
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (d.size() >= 8 && std::memcmp(d.data(), kPng, 8) == 0) return ImageFormat::kPng;
  return ImageFormat::kUnknown;
}

void require_png_ihdr_first(std::string_view data) {
  // Shorter data fails later as truncated, in whichever reader meets it.
  if (data.size() >= 16 && data.substr(12, 4) != "IHDR") fail("bad PNG image: IHDR is not the first chunk");
}

namespace {

void check_size(const char* what, int64_t w, int64_t h, int64_t max_pixels) {
  if (w <= 0 || h <= 0) fail("{} image has a zero size ({}x{})", what, w, h);
  if (w * h > max_pixels)
    fail("{} image is {}x{} = {} pixels, above the limit of {}", what, w, h, w * h, max_pixels);
}

// ---- JPEG ---------------------------------------------------------------------------------------
// libjpeg reports fatal errors through error_exit, which must not return. It longjmps back into the
// two small phase functions below; they hold only trivially destructible locals, so the jump skips
// no destructor. The C++ caller (which owns the output vector) turns a failed phase into an Error.

struct JpegErr {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
};

struct JpegCtx {
  jpeg_decompress_struct cinfo;
  JpegErr err;
  jpeg_progress_mgr progress;
  bool created = false;
};

void jpeg_error_exit(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegErr*>(c->err);
  (*c->err->format_message)(c, e->msg);
  std::longjmp(e->jump, 1);
}

// Warnings are silent, except a premature end of data: libjpeg would pad the image with gray,
// Pillow refuses it ("image file is truncated"), so do we.
void jpeg_emit_message(j_common_ptr c, int level) {
  if (level == -1 && c->err->msg_code == JWRN_JPEG_EOF) {
    auto* e = reinterpret_cast<JpegErr*>(c->err);
    std::snprintf(e->msg, sizeof e->msg, "truncated data");
    std::longjmp(e->jump, 1);
  }
}

// Every scan of a progressive JPEG is a pass over the whole coefficient buffer, and a scan can be a
// few dozen bytes (an end-of-band run over every block): 20 MB of them is minutes of CPU on a large
// image (measured: 20,000 such scans of a 4000 x 4000 image, 0.8 MB, took 8 s). Encoders write
// about 10 scans (libjpeg's default progression; mozjpeg's are of that order), so past
// kMaxJpegScans the file is refused, checked as each scan starts (libjpeg calls the progress hook
// while it absorbs the scans).
void jpeg_scan_limit(j_common_ptr c) {
  auto* d = reinterpret_cast<j_decompress_ptr>(c);
  if (d->input_scan_number <= kMaxJpegScans) return;
  auto* e = reinterpret_cast<JpegErr*>(c->err);
  std::snprintf(e->msg, sizeof e->msg, "more than %d scans (the limit for a JPEG image; progressive encoders write about 10)",
                kMaxJpegScans);
  std::longjmp(e->jump, 1);
}

bool jpeg_phase_header(JpegCtx* x, const uint8_t* data, size_t n) {
  x->cinfo.err = jpeg_std_error(&x->err.mgr);
  x->err.mgr.error_exit = jpeg_error_exit;
  x->err.mgr.emit_message = jpeg_emit_message;
  x->err.msg[0] = 0;
  if (setjmp(x->err.jump)) return false;
  jpeg_create_decompress(&x->cinfo);
  x->created = true;
  x->progress = {};
  x->progress.progress_monitor = jpeg_scan_limit;
  x->cinfo.progress = &x->progress;
  jpeg_mem_src(&x->cinfo, data, static_cast<unsigned long>(n));
  jpeg_read_header(&x->cinfo, TRUE);
  return true;
}

bool jpeg_phase_decode(JpegCtx* x, uint8_t* dst, size_t row_bytes) {
  if (setjmp(x->err.jump)) return false;
  jpeg_start_decompress(&x->cinfo);
  while (x->cinfo.output_scanline < x->cinfo.output_height) {
    JSAMPROW row = dst + size_t(x->cinfo.output_scanline) * row_bytes;
    jpeg_read_scanlines(&x->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&x->cinfo);
  return true;
}

struct JpegCleanup {
  JpegCtx* x;
  ~JpegCleanup() {
    if (x->created) jpeg_destroy_decompress(&x->cinfo);
  }
};

DecodedImage decode_jpeg(std::string_view data, int64_t max_pixels) {
  JpegCtx x{};
  JpegCleanup cleanup{&x};
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  if (!jpeg_phase_header(&x, bytes, data.size())) fail("bad JPEG image: {}", x.err.msg);
  check_size("JPEG", x.cinfo.image_width, x.cinfo.image_height, max_pixels);
  int channels = 3;
  switch (x.cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:  // replicated below, as Pillow's "L" -> "RGB"
      x.cinfo.out_color_space = JCS_GRAYSCALE;
      channels = 1;
      break;
    case JCS_YCbCr:
    case JCS_RGB:
      x.cinfo.out_color_space = JCS_RGB;
      break;
    default:
      fail("JPEG image in a CMYK/YCCK color space is not supported (send RGB or grayscale)");
  }
  DecodedImage img;
  img.width = int32_t(x.cinfo.image_width);
  img.height = int32_t(x.cinfo.image_height);
  img.rgb.resize(size_t(img.width) * img.height * 3);
  // Grayscale rows land in the first third of the buffer, then spread out in place from the end.
  if (!jpeg_phase_decode(&x, img.rgb.data(), size_t(img.width) * channels))
    fail("bad JPEG image: {}", x.err.msg);
  if (channels == 1)
    for (size_t i = size_t(img.width) * img.height; i-- > 0;)
      img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = img.rgb[i];
  return img;
}

// ---- PNG ----------------------------------------------------------------------------------------
// Same shape as JPEG: libpng's error callback longjmps into png_jmpbuf inside the phase functions.

struct PngCtx {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  char msg[256] = {0};
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
};

void png_on_error(png_structp p, png_const_charp m) {
  auto* x = static_cast<PngCtx*>(png_get_error_ptr(p));
  std::snprintf(x->msg, sizeof x->msg, "%s", m);
  png_longjmp(p, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

void png_read_mem(png_structp p, png_bytep out, size_t n) {
  auto* x = static_cast<PngCtx*>(png_get_io_ptr(p));
  if (n > x->size - x->pos) png_error(p, "truncated data");
  std::memcpy(out, x->data + x->pos, n);
  x->pos += n;
}

bool png_phase_header(PngCtx* x, uint32_t limit_edge) {
  if (setjmp(png_jmpbuf(x->png))) return false;
  png_set_read_fn(x->png, x, png_read_mem);
  // libpng's own check (its default is 1M per edge); ours on the pixel count follows.
  png_set_user_limits(x->png, limit_edge, limit_edge);
  png_read_info(x->png, x->info);
  png_get_IHDR(x->png, x->info, &x->width, &x->height, &x->bit_depth, &x->color_type, nullptr,
               nullptr, nullptr);
  return true;
}

bool png_phase_decode(PngCtx* x, png_bytep* rows) {
  if (setjmp(png_jmpbuf(x->png))) return false;
  png_read_image(x->png, rows);
  png_read_end(x->png, nullptr);
  return true;
}

struct PngCleanup {
  PngCtx* x;
  ~PngCleanup() { png_destroy_read_struct(&x->png, x->info ? &x->info : nullptr, nullptr); }
};

DecodedImage decode_png(std::string_view data, int64_t max_pixels) {
  require_png_ihdr_first(data);
  PngCtx x;
  x.data = reinterpret_cast<const uint8_t*>(data.data());
  x.size = data.size();
  x.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &x, png_on_error, png_on_warning);
  if (!x.png) fail("PNG decoder: out of memory");
  PngCleanup cleanup{&x};
  x.info = png_create_info_struct(x.png);
  if (!x.info) fail("PNG decoder: out of memory");
  const auto edge = uint32_t(std::min<int64_t>(max_pixels, 0x7fffffff));
  if (!png_phase_header(&x, edge)) fail("bad PNG image: {}", x.msg);
  check_size("PNG", x.width, x.height, max_pixels);

  // Pillow opens 16-bit grayscale as mode "I" and its I -> RGB conversion clips every value to
  // 255 instead of scaling; 16-bit color and gray+alpha keep the high byte of each sample.
  const bool gray16 = x.bit_depth == 16 && x.color_type == PNG_COLOR_TYPE_GRAY;
  if (x.color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(x.png);
  if (x.color_type == PNG_COLOR_TYPE_GRAY && x.bit_depth < 8) png_set_expand_gray_1_2_4_to_8(x.png);
  if (x.bit_depth == 16 && !gray16) png_set_strip_16(x.png);
  if (x.color_type & PNG_COLOR_MASK_ALPHA || png_get_valid(x.png, x.info, PNG_INFO_tRNS))
    png_set_strip_alpha(x.png);  // transparency is dropped, as convert("RGB") does
  if (!gray16 && !(x.color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(x.png);
  png_set_interlace_handling(x.png);
  png_read_update_info(x.png, x.info);
  const size_t row_bytes = png_get_rowbytes(x.png, x.info);
  const size_t want = gray16 ? size_t(x.width) * 2 : size_t(x.width) * 3;
  DP_CHECK(row_bytes == want, "PNG row of {} bytes, expected {}", row_bytes, want);

  DecodedImage img;
  img.width = int32_t(x.width);
  img.height = int32_t(x.height);
  std::vector<uint8_t> buf(row_bytes * x.height);
  std::vector<png_bytep> rows(x.height);
  for (uint32_t r = 0; r < x.height; ++r) rows[r] = buf.data() + r * row_bytes;
  if (!png_phase_decode(&x, rows.data())) fail("bad PNG image: {}", x.msg);
  if (!gray16) {
    img.rgb = std::move(buf);
    return img;
  }
  img.rgb.resize(size_t(x.width) * x.height * 3);
  for (size_t i = 0; i < size_t(x.width) * x.height; ++i) {
    const unsigned v = (unsigned(buf[2 * i]) << 8) | buf[2 * i + 1];  // PNG samples are big-endian
    img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = uint8_t(v > 255 ? 255 : v);
  }
  return img;
}

}  // namespace

DecodedImage decode_image(std::string_view data, int64_t max_pixels) {
  if (data.empty()) fail("image is empty");
  switch (sniff_image_format(data)) {
    case ImageFormat::kJpeg: return decode_jpeg(data, max_pixels);
    case ImageFormat::kPng: return decode_png(data, max_pixels);
    default: break;
  }
  if (data.size() >= 4 && data.substr(0, 4) == "GIF8") fail("GIF images are not supported (send JPEG or PNG)");
  fail("image is not a JPEG or PNG file (unrecognized first bytes)");
}

}  // namespace dpserve
