#include "kv/prefix_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
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
  lock(dir, rank);
  removed_temps_ = remove_dead_writers_temps(dir, rank);
  // A file size limit (ulimit -f, RLIMIT_FSIZE) reached mid-write would kill the whole server with
  // SIGXFSZ; ignored, the write fails with EFBIG instead and write_prefix_file's failure path
  // removes the temp file and warns. Process-wide: any other write past the limit fails the same way.
  ::signal(SIGXFSZ, SIG_IGN);
}

void PrefixDir::lock(const std::string& dir, int rank) {
  // Two live servers on one directory would each rewrite the other's file with their own tree: the
  // later start is refused. flock: the kernel drops it when the process dies, however it dies, so
  // a crash leaves no stale lock (the file stays; it holds the last holder's pid, for the message).
  const std::string lock = (std::filesystem::path(dir) / fmt::format("rank{}.lock", rank)).string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail("--kv-cache-dir: cannot open {}: {}", lock, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char pid[32] = {};
    const ssize_t n = err == EWOULDBLOCK ? ::pread(fd, pid, sizeof pid - 1, 0) : 0;
    ::close(fd);
    if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) {
      // A filesystem without locks (some NFS mounts without lockd): served as before the lock existed.
      warning_ = fmt::format("--kv-cache-dir: {} cannot be locked ({}): a second server given this directory "
                             "would not be refused, and the two would overwrite each other's prefix cache",
                             lock, std::strerror(err));
      return;
    }
    if (err != EWOULDBLOCK) fail("--kv-cache-dir: cannot lock {}: {}", lock, std::strerror(err));
    fail("--kv-cache-dir {}: another running server{} uses this directory for rank {} ({} is locked); two servers on "
         "one directory would overwrite each other's prefix cache: give each its own --kv-cache-dir",
         dir, n > 0 ? fmt::format(" (pid {})", std::string(pid, size_t(n))) : std::string(), rank, lock);
  }
  lock_fd_ = fd;
  // Our pid, for a second server's message (should this fail, that message names no pid).
  const std::string me = std::to_string(::getpid());
  const bool noted = ::ftruncate(fd, 0) == 0 && ::pwrite(fd, me.data(), me.size(), 0) > 0;
  (void)noted;
}

int PrefixDir::remove_dead_writers_temps(const std::string& dir, int rank) {
  // write_prefix_file's temp files are rank<N>.kvcache.tmp.<writer's pid>; a writer killed mid-write
  // leaves its own, which nothing else would ever remove (each file is as large as the cache).
  // Another rank's are its business; a live process's may be being written (a server whose lock
  // this filesystem does not enforce), so only ours and those of pids that no longer exist go.
  const std::string prefix = fmt::format("rank{}.kvcache.tmp.", rank);
  int removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = pid_t(std::stol(digits));
    const bool dead = pid == ::getpid() || (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH);
    if (dead && ::unlink(e.path().c_str()) == 0) ++removed;
  }
  return removed;
}

PrefixDir::~PrefixDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

}  // namespace dpserve
