#include "model/weight_digest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "core/check.h"
#include "model/model_identity.h"

namespace dpserve {

namespace {

constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
constexpr int64_t kChunk = int64_t(8) << 20;

inline uint64_t step(uint64_t h, uint64_t w) {
  h = (h ^ w) * kMul;
  return h ^ (h >> 29);
}

struct Piece {
  size_t file;
  int64_t at, n;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

uint64_t chunk_hash(const void* data, size_t n, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  // Four independent lanes over 32-byte blocks: each lane's multiply waits for its previous one,
  // so one lane alone would run at a quarter of what a core can do.
  uint64_t h[4] = {step(seed, 1), step(seed, 2), step(seed, 3), step(seed, 4)};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    for (int l = 0; l < 4; ++l) h[l] = step(h[l], w[l]);
  }
  // The tail, zero-padded (n, folded in below, tells a zero byte from padding).
  uint64_t w[4] = {};
  std::memcpy(w, p + i, n - i);
  for (int l = 0; l < 4; ++l) h[l] = step(h[l], w[l]);
  return step(step(step(step(step(h[0], h[1]), h[2]), h[3]), n), 0);
}

uint64_t weight_files_digest(const std::string& model_path, int threads, int64_t* bytes) {
  namespace fs = std::filesystem;
  const std::vector<std::string> files = model_weight_files(model_path);
  std::vector<int64_t> sizes;
  std::vector<Piece> pieces;
  for (size_t f = 0; f < files.size(); ++f) {
    std::error_code ec;
    const int64_t size = int64_t(fs::file_size(files[f], ec));
    if (ec) fail("cannot read the size of {}: {}", files[f], ec.message());
    sizes.push_back(size);
    for (int64_t at = 0; at < size; at += kChunk) pieces.push_back({f, at, std::min(kChunk, size - at)});
  }
  std::vector<uint64_t> sums(pieces.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string error;  // the first failure's (written once, by the thread that set `failed`)
  auto work = [&] {
    std::vector<unsigned char> buf(static_cast<size_t>(kChunk));
    Fd fd;
    size_t open_file = size_t(-1);
    for (size_t i; !failed && (i = next++) < pieces.size();) {
      const Piece& c = pieces[i];
      if (c.file != open_file) {
        if (fd.fd >= 0) ::close(fd.fd);
        fd.fd = ::open(files[c.file].c_str(), O_RDONLY | O_CLOEXEC);
        open_file = c.file;
      }
      int err = fd.fd < 0 ? errno : 0;
      int64_t got = 0;
      while (fd.fd >= 0 && got < c.n) {
        const ssize_t r = ::pread(fd.fd, buf.data() + got, size_t(c.n - got), c.at + got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        if (r <= 0) break;
        got += r;
      }
      if (got != c.n) {
        const std::string why = err ? std::strerror(err) : "it is shorter than its size";
        if (!failed.exchange(true)) error = fmt::format("cannot read {}: {}", files[c.file], why);
        return;
      }
      // Seeded by the chunk's place: equal chunks at other offsets or in other files hash apart.
      sums[i] = chunk_hash(buf.data(), size_t(c.n), step(step(kFnvOffset, c.file), uint64_t(c.at)));
    }
  };
  const int n = std::max(1, std::min<int>(threads, int(pieces.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failed) fail("{}", error);
  uint64_t h = kFnvOffset;
  int64_t total = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string name = fs::path(files[f]).filename().string();
    h = fnv1a(h, name.data(), name.size() + 1);
    h = step(h, uint64_t(sizes[f]));
    total += sizes[f];
  }
  for (uint64_t s : sums) h = step(h, s);
  if (bytes) *bytes = total;
  return h;
}

}  // namespace dpserve
