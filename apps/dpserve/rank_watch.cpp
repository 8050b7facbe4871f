#include "apps/dpserve/rank_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace dpserve::app {

namespace {

// The whole of a /proc file, or "" if it cannot be read. Plain read(2): a rank that exits between open and
// read makes read fail with ESRCH, and libstdc++'s filebuf turns that into an exception that an
// istreambuf_iterator does not catch (it ended a server that had stopped cleanly).
std::string read_proc_file(const std::string& path) {
  std::string out;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  close(fd);
  return out;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// (parent pid, state) from /proc/<pid>/stat; the command name may hold spaces and parentheses.
bool read_stat(pid_t pid, pid_t& ppid, char& state) {
  const std::string s = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = s.rfind(')');
  if (close == std::string::npos || close + 4 >= s.size()) return false;
  state = s[close + 2];
  ppid = pid_t(std::atol(s.c_str() + close + 4));
  return true;
}

int world_rank(pid_t pid) {
  const std::string env = read_proc_file("/proc/" + std::to_string(pid) + "/environ");
  const std::string key = "OMPI_COMM_WORLD_RANK=";
  for (size_t at = 0; at < env.size();) {
    const size_t end = env.find('\0', at);
    const std::string kv = env.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (kv.compare(0, key.size(), key) == 0) return std::atoi(kv.c_str() + key.size());
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return -1;
}

}  // namespace

void StoppedRankWatch::find_ranks() {
  DIR* d = opendir("/proc");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long v = std::strtol(e->d_name, &end, 10);
    if (v <= 0 || *end != '\0') continue;
    pid_t ppid = 0;
    char state = 0;
    if (read_stat(pid_t(v), ppid, state) && ppid == mpirun_ && !ranks_.count(pid_t(v))) ranks_[pid_t(v)] = Seen{};
  }
  closedir(d);
}

void StoppedRankWatch::poll() {
  if (grace_ <= 0) return;
  const double now = now_s();
  if (now - last_poll_ < 0.25) return;
  last_poll_ = now;
  // Ranks are started once; scanning /proc (the costly part) stops when all are found.
  if (int(ranks_.size()) < n_ranks_ && now - last_scan_ >= 1.0) {
    last_scan_ = now;
    find_ranks();
  }
  for (auto& [pid, s] : ranks_) {
    pid_t ppid = 0;
    char state = 0;
    if (s.killed || !read_stat(pid, ppid, state) || ppid != mpirun_) continue;
    if (s.rank < 0) s.rank = world_rank(pid);
    if (state != 'T' && state != 't') {
      s.stopped_at = 0;
    } else if (s.stopped_at == 0) {
      s.stopped_at = now;
    } else if (now - s.stopped_at > grace_) {
      std::fprintf(stderr,
                   "dpserve: watchdog: rank %d has stopped (pid %d, in state '%c', e.g. SIGSTOP, for %.1f s) and "
                   "the other ranks cannot go on without it. Killing it, which ends the job.\n",
                   s.rank, int(pid), state, now - s.stopped_at);
      std::fflush(stderr);
      kill(pid, SIGKILL);
      s.killed = true;
    }
  }
}

}  // namespace dpserve::app
