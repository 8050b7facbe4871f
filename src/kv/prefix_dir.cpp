#include "kv/prefix_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve {

namespace {

// Like create_directories, but what it creates is 0700 (before the umask), not 0777.
void make_private_dirs(const std::filesystem::path& p) {
  std::error_code ec;
  if (p.empty() || std::filesystem::exists(p, ec)) return;
  make_private_dirs(p.parent_path());
  if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST)
    fail("--kv-cache-dir: cannot create {}: {}", p.string(), std::strerror(errno));
}

}  // namespace

PrefixDir::PrefixDir(const std::string& dir, int rank) {
  namespace fs = std::filesystem;
  make_private_dirs(fs::path(dir).lexically_normal());
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || ::access(dir.c_str(), W_OK) != 0)
    fail("--kv-cache-dir {}: not a writable directory", dir);
  file_ = (fs::path(dir) / fmt::format("rank{}.kvcache", rank)).string();
}

PrefixDir::~PrefixDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

}  // namespace dpserve
