#include "apps/dpserve/launch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "apps/dpserve/rank_watch.h"
#include "core/check.h"
#include "parallel/comm.h"

namespace dpserve::app {

namespace {
std::vector<std::string> g_argv;

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::filesystem::path cand = std::filesystem::path(p.substr(start, end - start)) / name;
    if (access(cand.c_str(), X_OK) == 0) return cand.string();
    start = end + 1;
  }
  return "";
}
}  // namespace

void remember_argv(int argc, char** argv) { g_argv.assign(argv, argv + argc); }

void relaunch_under_mpirun_if_needed(int world, double watchdog_seconds) {
  if (world <= 1 || launched_under_mpi()) return;
  const char* env_launcher = std::getenv("DPSERVE_MPIRUN");
  std::string mpirun = env_launcher && *env_launcher ? env_launcher : find_in_path("mpirun");
  if (mpirun.empty())
    fail("{} ranks requested (--tp-size / --dp-size) but mpirun was not found on PATH; install openmpi-bin "
         "(scripts/install-deps.sh) or start dpserve under your MPI launcher",
         world);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {mpirun, "-np", std::to_string(world), "--oversubscribe", "--bind-to", "none"};
  if (geteuid() == 0) args.push_back("--allow-run-as-root");
  // A rank that exits non-zero takes the job down (the default, stated for clarity).
  args.push_back(self);
  for (size_t i = 1; i < g_argv.size(); ++i) args.push_back(g_argv[i]);
  spdlog::info("starting {} ranks: {}", world, [&] {
    std::string s;
    for (auto& a : args) s += a + " ";
    return s;
  }());
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  // Stay the process the user started: forward SIGTERM / SIGINT to the job as SIGUSR2
  // (mpirun passes SIGUSR2 on to every rank; rank 0 then drains and stops the job
  // gracefully, whereas mpirun answers SIGTERM itself by killing the ranks).
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, nullptr);
  pid_t child = fork();
  if (child < 0) fail("cannot fork to start {}: {}", mpirun, std::strerror(errno));
  if (child == 0) {
    sigprocmask(SIG_UNBLOCK, &block, nullptr);
    execv(mpirun.c_str(), cargs.data());
    std::fprintf(stderr, "dpserve: cannot execute %s: %s\n", mpirun.c_str(), std::strerror(errno));
    _exit(127);
  }
  // Half the watchdog: a stopped rank is named here before the others' watchdog ends the job
  // without knowing which rank it waited for.
  StoppedRankWatch watch(child, world, watchdog_seconds / 2);
  while (true) {
    int status = 0;
    pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child) std::exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    watch.poll();
    timespec ts{0, 100 * 1000 * 1000};
    siginfo_t info;
    int sig = sigtimedwait(&block, &info, &ts);
    if (sig == SIGTERM || sig == SIGINT) kill(child, SIGUSR2);
  }
}

}  // namespace dpserve::app
