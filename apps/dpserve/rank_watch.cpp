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

#include "apps/dpserve/launcher_note.h"

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

// How long rank 0 gets to end its open requests after a note before the rank is killed anyway: its
// stop takes at most ~1.5 s (RankWorker::die), more on a loaded machine.
constexpr double kNoteSeconds = 3;

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

bool StoppedRankWatch::alive(pid_t pid) const {
  pid_t ppid = 0;
  char state = 0;
  return read_stat(pid, ppid, state) && ppid == mpirun_ && state != 'Z' && state != 'X';
}

void StoppedRankWatch::doom(pid_t pid, Seen& s, int note, double now) {
  pid_t rank0 = -1;
  if (tell_rank0_)
    for (auto& [p, r] : ranks_)
      if (r.rank == 0 && p != pid && !r.killed && alive(p)) rank0 = p;
  const bool told = rank0 > 0 && send_launcher_note(rank0, LauncherNote(note), s.rank);
  const char* what = told ? "Telling rank 0 (it ends its open requests with this fault), then killing it" : "Killing it";
  std::fprintf(stderr,
               "dpserve: watchdog: rank %d %s (pid %d, stopped, e.g. SIGSTOP, for %.1f s) and the other ranks cannot "
               "go on without it. %s, which ends the job.\n",
               s.rank,
               LauncherNote(note) == LauncherNote::kRankStopped ? "has stopped"
                                                                : "did not stop within --shutdown-timeout + 5 s",
               int(pid), now - s.stopped_at, what);
  std::fflush(stderr);
  if (told) {
    s.kill_at = now + kNoteSeconds;
  } else {
    kill(pid, SIGKILL);
    s.killed = true;
  }
}

int StoppedRankWatch::stop_stopped_ranks() {
  const double now = now_s();
  int n = 0;
  for (auto& [pid, s] : ranks_) {
    pid_t ppid = 0;
    char state = 0;
    if (s.killed || s.kill_at > 0 || !read_stat(pid, ppid, state) || ppid != mpirun_) continue;
    if (state != 'T' && state != 't') continue;
    if (s.rank < 0 && world_rank(pid) >= 0) s.rank = first_rank_ + world_rank(pid);
    if (s.stopped_at == 0) s.stopped_at = now;
    doom(pid, s, int(LauncherNote::kRankDidNotStop), now);
    ++n;
  }
  return n;
}

void StoppedRankWatch::poll() {
  const double now = now_s();
  if (now - last_poll_ < 0.25) return;
  last_poll_ = now;
  // Ranks are started once; scanning /proc (the costly part) stops when all are found.
  if (int(ranks_.size()) < n_ranks_ && now - last_scan_ >= 1.0) {
    last_scan_ = now;
    find_ranks();
  }
  bool rank0_alive = false;
  for (auto& [pid, s] : ranks_)
    if (s.rank == 0 && alive(pid)) rank0_alive = true;
  for (auto& [pid, s] : ranks_) {
    if (s.kill_at > 0 && !s.killed && (now >= s.kill_at || !rank0_alive)) {
      kill(pid, SIGKILL);
      s.killed = true;
    }
    pid_t ppid = 0;
    char state = 0;
    if (s.killed || s.kill_at > 0 || !read_stat(pid, ppid, state) || ppid != mpirun_) continue;
    if (s.rank < 0) {
      const int local = world_rank(pid);
      if (local >= 0) s.rank = first_rank_ + local;
    }
    if (state != 'T' && state != 't') {
      s.stopped_at = 0;
    } else if (s.stopped_at == 0) {
      s.stopped_at = now;
    } else if (grace_ > 0 && now - s.stopped_at > grace_) {
      doom(pid, s, int(LauncherNote::kRankStopped), now);
    }
  }
}

}  // namespace dpserve::app
