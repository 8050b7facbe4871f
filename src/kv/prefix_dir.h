// One rank's use of the --kv-cache-dir directory, set up once at start: the directory created
// private, this rank's lock taken (two live servers on one directory would overwrite each other's
// file), temp files left by crashed writers removed, and a file size limit made a failed write
// instead of a kill. The file itself is kv/prefix_store.h's.
#pragma once

#include <string>

namespace dpserve {

class PrefixDir {
 public:
  // Creates `dir` when missing (with any missing parents, each 0700: the files hold every client's
  // prompt tokens and their KV), checks it is a writable directory, takes the non-blocking lock
  // DIR/rank<rank>.lock (flock) for as long as this object lives, and removes this rank's temp
  // files (rank<rank>.kvcache.tmp.<pid>) whose writer is no longer running, and ignores SIGXFSZ in
  // this process (a write past RLIMIT_FSIZE then fails with EFBIG). Throws dpserve::Error
  // naming --kv-cache-dir when the directory cannot be used or another live process holds the lock.
  PrefixDir(const std::string& dir, int rank);
  ~PrefixDir();
  PrefixDir(const PrefixDir&) = delete;
  PrefixDir& operator=(const PrefixDir&) = delete;

  // DIR/rank<rank>.kvcache
  const std::string& file() const { return file_; }
  // Non-empty when the directory's filesystem has no locks (the start goes on without one): for
  // the caller to log.
  const std::string& warning() const { return warning_; }
  // Temp files of crashed writers removed at start.
  int removed_temps() const { return removed_temps_; }

 private:
  void lock(const std::string& dir, int rank);
  static int remove_dead_writers_temps(const std::string& dir, int rank);

  std::string file_;
  std::string warning_;
  int lock_fd_ = -1;
  int removed_temps_ = 0;
};

}  // namespace dpserve
