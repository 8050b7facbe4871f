// One rank's use of the --kv-cache-dir directory, set up once at start: the directory created
// private. The file itself is kv/prefix_store.h's.
#pragma once

#include <string>

namespace dpserve {

class PrefixDir {
 public:
  // Creates `dir` when missing (with any missing parents, each 0700: the files hold every client's
  // prompt tokens and their KV) and checks it is a writable directory. Throws dpserve::Error naming
  // --kv-cache-dir when the directory cannot be used.
  PrefixDir(const std::string& dir, int rank);
  ~PrefixDir();
  PrefixDir(const PrefixDir&) = delete;
  PrefixDir& operator=(const PrefixDir&) = delete;

  // DIR/rank<rank>.kvcache
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  int lock_fd_ = -1;
};

}  // namespace dpserve
