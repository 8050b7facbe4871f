#include "apps/dpserve/launcher_note.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

namespace dpserve::app {

namespace {

// The value's layout: a tag in bits 24-30 (a stray queued SIGUSR1 is not read as a note), the
// note's kind in bits 20-23, the world rank in bits 0-19.
constexpr int kTag = 0x5d;

// The parent of process `pid`, or -1.
pid_t parent_of(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  const std::string s(buf, size_t(n));
  const size_t close_paren = s.rfind(')');
  if (close_paren == std::string::npos || close_paren + 4 >= s.size()) return -1;
  return pid_t(std::atol(s.c_str() + close_paren + 4));
}

}  // namespace

bool send_launcher_note(pid_t rank0, LauncherNote note, int rank) {
  if (rank0 <= 0 || rank < 0 || rank >= (1 << 20)) return false;
  sigval v{};
  v.sival_int = (kTag << 24) | (int(note) << 20) | rank;
  return sigqueue(rank0, SIGUSR1, v) == 0;
}

std::string read_launcher_note(const siginfo_t& si) {
  if (si.si_signo != SIGUSR1 || si.si_code != SI_QUEUE) return "";
  // The launcher is mpirun's parent; mpirun is ours.
  if (si.si_pid != parent_of(getppid())) return "";
  const int v = si.si_value.sival_int;
  if (((v >> 24) & 0x7f) != kTag) return "";
  const int rank = v & ((1 << 20) - 1);
  switch (LauncherNote((v >> 20) & 0xf)) {
    case LauncherNote::kRankStopped:
      return fmt::format("rank {} has stopped (SIGSTOP or a debugger's stop) for half of --watchdog-timeout: the "
                         "dpserve launcher kills it, which ends the job",
                         rank);
    case LauncherNote::kRankDidNotStop:
      return fmt::format("rank {} is stopped (SIGSTOP or a debugger's stop) and did not stop within "
                         "--shutdown-timeout + 5 s of the drain: the dpserve launcher kills it, which ends the job",
                         rank);
  }
  return "";
}

}  // namespace dpserve::app
