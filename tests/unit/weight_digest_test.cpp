// weight_digest: the --kv-cache-dir identity's digest of every weight byte. One byte changed where
// model_identity's sampled digest does not look (a small tensor: a bias, a norm) must change it;
// it must not depend on the thread count, and an identical copy must give the same value.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "model/config.h"
#include "model/model_identity.h"
#include "model/weight_digest.h"

namespace dpserve {
namespace {

namespace fs = std::filesystem;

int64_t sampled_digest(const std::string& dir) {
  for (const auto& [k, v] : model_identity(dir, ModelConfig{}))
    if (k == "model weights digest") return v;
  ADD_FAILURE() << "no model weights digest";
  return 0;
}

TEST(WeightDigest, EveryByteCountsWhereTheSampledDigestDoesNotLook) {
  const std::string dir = fs::temp_directory_path() / ("dpserve_weight_digest_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string file = dir + "/model.safetensors";
  std::vector<char> bytes(size_t(20) << 20);  // 20 MiB: three 8 MiB chunks, the last one short
  std::mt19937_64 rng(7);
  for (auto& b : bytes) b = char(rng());
  auto write = [&] { std::ofstream(file, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size())); };
  write();
  const uint64_t base = weight_files_digest(dir, 1);
  int64_t read = 0;
  EXPECT_EQ(weight_files_digest(dir, 3, &read), base);  // threads do not change the value
  EXPECT_EQ(read, int64_t(bytes.size()));
  const int64_t sampled = sampled_digest(dir);
  // Offsets the sampled digest skips (it reads 4 KiB at 64 KiB + k MiB), in each chunk, and the last byte.
  for (const size_t at : {size_t(1) << 20, (size_t(9) << 20) + 12345, bytes.size() - 70000, bytes.size() - 1}) {
    const char was = bytes[at];
    bytes[at] ^= 0x01;
    write();
    if (at != bytes.size() - 1) EXPECT_EQ(sampled_digest(dir), sampled) << "the sampled digest reads " << at;
    EXPECT_NE(weight_files_digest(dir, 2), base) << "one bit flipped at " << at;
    bytes[at] = was;
  }
  write();
  EXPECT_EQ(weight_files_digest(dir, 2), base);
  // One byte more or less (the tail is zero-padded in the hash: the length must still tell).
  bytes.push_back(0);
  write();
  EXPECT_NE(weight_files_digest(dir, 2), base);
  fs::remove_all(dir);
}

TEST(WeightDigest, ChunkHashSeesLengthAndEveryByte) {
  std::vector<unsigned char> z(100, 0);
  EXPECT_NE(chunk_hash(z.data(), 99, 1), chunk_hash(z.data(), 100, 1));
  EXPECT_NE(chunk_hash(z.data(), 100, 1), chunk_hash(z.data(), 100, 2));
  const uint64_t h = chunk_hash(z.data(), 100, 1);
  for (size_t i = 0; i < z.size(); ++i) {
    z[i] = 0x80;
    EXPECT_NE(chunk_hash(z.data(), 100, 1), h) << i;
    z[i] = 0;
  }
}

TEST(WeightDigest, AMissingFileIsAnError) {
  EXPECT_THROW(weight_files_digest("/nonexistent/model.gguf", 1), Error);
}

}  // namespace
}  // namespace dpserve
