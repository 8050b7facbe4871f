#include "vision/image_resize.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <openssl/sha.h>

#include "core/check.h"
#include "vision/image_decode.h"

namespace dpserve {

std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor,
                                         int64_t min_pixels, int64_t max_pixels) {
  DP_CHECK(height > 0 && width > 0 && factor > 0);
  if (double(std::max(height, width)) / double(std::min(height, width)) > 200)
    fail("image aspect ratio {}x{} is above 200", height, width);
  // Python's round() rounds halves to even: std::nearbyint in the default rounding mode does too.
  auto round_by = [&](double v) { return int64_t(std::nearbyint(v / double(factor))) * factor; };
  int64_t h = round_by(double(height)), w = round_by(double(width));
  if (h * w > max_pixels) {
    const double beta = std::sqrt(double(height) * double(width) / double(max_pixels));
    h = std::max(factor, int64_t(std::floor(double(height) / beta / double(factor))) * factor);
    w = std::max(factor, int64_t(std::floor(double(width) / beta / double(factor))) * factor);
  } else if (h * w < min_pixels) {
    const double beta = std::sqrt(double(min_pixels) / (double(height) * double(width)));
    h = int64_t(std::ceil(double(height) * beta / double(factor))) * factor;
    w = int64_t(std::ceil(double(width) * beta / double(factor))) * factor;
  }
  return {h, w};
}

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed point for 8-bit images

double cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// The taps of one output coordinate: the first input index and fixed-point weights.
struct Taps {
  int32_t first = 0;
  std::vector<int32_t> w;
};

std::vector<Taps> taps_for(int32_t in_size, int32_t out_size) {
  const double scale = double(in_size) / double(out_size);
  const double filter_scale = std::max(scale, 1.0);  // antialias: widen the kernel when shrinking
  const double support = 2.0 * filter_scale;
  std::vector<Taps> out(static_cast<size_t>(out_size));
  std::vector<double> k;
  for (int32_t o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // The casts truncate toward zero, as Pillow's (int) casts do.
    int32_t lo = int32_t(center - support + 0.5);
    if (lo < 0) lo = 0;
    int32_t hi = int32_t(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    k.assign(size_t(hi - lo), 0.0);
    double sum = 0;
    for (int32_t i = lo; i < hi; ++i) sum += k[size_t(i - lo)] = cubic((i - center + 0.5) / filter_scale);
    Taps& t = out[size_t(o)];
    t.first = lo;
    t.w.resize(k.size());
    for (size_t i = 0; i < k.size(); ++i) {
      const double v = (sum != 0.0 ? k[i] / sum : k[i]) * double(1 << kPrecisionBits);
      t.w[i] = int32_t(v < 0 ? v - 0.5 : v + 0.5);
    }
  }
  return out;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;
  return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

std::vector<uint8_t> resize_bicubic_rgb(std::vector<uint8_t> rgb, int32_t height,
                                        int32_t width, int32_t out_height, int32_t out_width) {
  DP_CHECK(height > 0 && width > 0 && out_height > 0 && out_width > 0);
  DP_CHECK(rgb.size() == size_t(height) * width * 3);
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  // Taken by value and moved from: the source is freed after the first pass, not at the end.
  std::vector<uint8_t> cur = std::move(rgb);
  if (out_width != width) {
    const auto taps = taps_for(width, out_width);
    std::vector<uint8_t> next(size_t(height) * out_width * 3);
    for (int32_t y = 0; y < height; ++y) {
      const uint8_t* src = &cur[size_t(y) * width * 3];
      uint8_t* dst = &next[size_t(y) * out_width * 3];
      for (int32_t x = 0; x < out_width; ++x) {
        const Taps& t = taps[size_t(x)];
        int32_t acc[3] = {kHalf, kHalf, kHalf};
        for (size_t i = 0; i < t.w.size(); ++i) {
          const uint8_t* p = src + (size_t(t.first) + i) * 3;
          for (int c = 0; c < 3; ++c) acc[c] += int32_t(p[c]) * t.w[i];
        }
        for (int c = 0; c < 3; ++c) dst[size_t(x) * 3 + c] = clip8(acc[c]);
      }
    }
    cur = std::move(next);
    width = out_width;
  }
  if (out_height != height) {
    const auto taps = taps_for(height, out_height);
    const size_t row = size_t(width) * 3;
    std::vector<uint8_t> next(size_t(out_height) * row);
    std::vector<int32_t> acc(row);
    for (int32_t y = 0; y < out_height; ++y) {
      const Taps& t = taps[size_t(y)];
      std::fill(acc.begin(), acc.end(), kHalf);
      for (size_t i = 0; i < t.w.size(); ++i) {
        const uint8_t* src = &cur[(size_t(t.first) + i) * row];
        const int32_t w = t.w[i];
        for (size_t j = 0; j < row; ++j) acc[j] += int32_t(src[j]) * w;
      }
      uint8_t* dst = &next[size_t(y) * row];
      for (size_t j = 0; j < row; ++j) dst[j] = clip8(acc[j]);
    }
    cur = std::move(next);
  }
  return cur;
}

uint64_t image_content_hash(std::string_view bytes) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), d);
  uint64_t h = 0;
  for (int i = 0; i < 8; ++i) h = (h << 8) | d[i];
  return h;
}

ImageInput materialize_image(std::string_view bytes, const ImagePreprocessConfig& cfg,
                             const ImageLimits& limits, MaterializeTimes* times) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  DecodedImage d = decode_image(bytes, limits.max_decoded_pixels);
  const auto t1 = Clock::now();
  const auto [h, w] = smart_resize(d.height, d.width, cfg.factor(), cfg.min_pixels, cfg.max_pixels);
  ImageInput img;
  img.height = int32_t(h);
  img.width = int32_t(w);
  img.hash = image_content_hash(bytes);
  img.rgb = (h == d.height && w == d.width)
                ? std::move(d.rgb)
                : resize_bicubic_rgb(std::move(d.rgb), d.height, d.width, int32_t(h), int32_t(w));
  if (times) {
    times->decode_s += std::chrono::duration<double>(t1 - t0).count();
    times->preprocess_s += std::chrono::duration<double>(Clock::now() - t1).count();
  }
  return img;
}

}  // namespace dpserve
