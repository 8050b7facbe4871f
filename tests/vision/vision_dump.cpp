// Test driver for the image pipeline: decodes or materializes one file and writes what came out,
// so pil_check.py can compare it with Pillow and a NumPy Qwen2VLImageProcessor.
//   vision_dump decode FILE OUT
//   vision_dump materialize FILE OUT PATCH TEMPORAL MERGE MIN_PIXELS MAX_PIXELS [MAX_DECODED_PIXELS]
// Writes OUT.txt ("height width hash"), OUT.rgb (raw RGB8) and for materialize OUT.patches
// (image_patches() as little-endian float32). A bad image prints "error: ..." and exits with 2.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "core/check.h"
#include "vision/image_decode.h"
#include "vision/image_resize.h"

namespace {

void write(const std::string& path, const void* p, size_t n) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(p), std::streamsize(n));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dpserve;
  if (argc < 4) {
    std::fprintf(stderr, "usage: vision_dump decode|materialize FILE OUT ...\n");
    return 1;
  }
  const std::string mode = argv[1], out = argv[3];
  std::ifstream in(argv[2], std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    if (mode == "decode") {
      const DecodedImage d = decode_image(bytes, int64_t(1) << 25);
      std::ofstream(out + ".txt") << d.height << " " << d.width << " 0\n";
      write(out + ".rgb", d.rgb.data(), d.rgb.size());
      return 0;
    }
    if (mode != "materialize" || argc < 9) return 1;
    ImagePreprocessConfig c;
    c.patch_size = std::stoi(argv[4]);
    c.temporal_patch_size = std::stoi(argv[5]);
    c.merge_size = std::stoi(argv[6]);
    c.min_pixels = std::stoll(argv[7]);
    c.max_pixels = std::stoll(argv[8]);
    ImageLimits lim;
    if (argc > 9) lim.max_decoded_pixels = std::stoll(argv[9]);
    const ImageInput img = materialize_image(bytes, c, lim);
    std::ofstream(out + ".txt") << img.height << " " << img.width << " " << img.hash << "\n";
    write(out + ".rgb", img.rgb.data(), img.rgb.size());
    const auto patches = image_patches(img, c);
    write(out + ".patches", patches.data(), patches.size() * sizeof(float));
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
