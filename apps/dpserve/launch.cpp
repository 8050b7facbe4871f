#include "apps/dpserve/launch.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>
#include <tuple>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "apps/dpserve/launcher_note.h"
#include "apps/dpserve/node_control.h"
#include "apps/dpserve/node_dir.h"
#include "apps/dpserve/rank_watch.h"
#include "core/check.h"
#include "parallel/comm.h"
#include "parallel/dist_secret.h"
#include "parallel/listen_address.h"
#include "parallel/rendezvous.h"

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

namespace {

// The flags that carry secrets, and the environment variables their values travel in (the ones
// the flags also read: cmd_serve.cpp).
constexpr const char* kSecretFlags[] = {"--api-key", "--admin-api-key"};
constexpr const char* kSecretEnv[] = {"DPSERVE_API_KEY", "DPSERVE_ADMIN_API_KEY"};

// argv without the secret flags and their values (`--api-key K`, `--api-key=K`, and for the
// comma- or space-separated list of --api-key, every value up to the next flag); each flag's
// values, comma-joined, are set in its environment variable instead (a flag given overrides the
// variable, as it does when parsed).
std::vector<std::string> move_secrets_to_environment(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  std::string values[2];
  bool seen[2] = {false, false};
  auto add = [&](int f, const std::string& v) {
    if (!values[f].empty()) values[f] += ",";
    values[f] += v;
    seen[f] = true;
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    int f = -1;
    bool inline_value = false;
    for (int k = 0; k < 2; ++k) {
      const std::string flag = kSecretFlags[k];
      if (a == flag) f = k;
      if (a.rfind(flag + "=", 0) == 0) f = k, inline_value = true;
    }
    if (f < 0 || i == 0) {
      out.push_back(a);
      continue;
    }
    if (inline_value) {
      add(f, a.substr(std::string(kSecretFlags[f]).size() + 1));
      continue;
    }
    // --api-key takes a list (CLI11 reads every value up to the next flag); --admin-api-key one.
    while (i + 1 < argv.size() && !(argv[i + 1].size() > 1 && argv[i + 1][0] == '-')) {
      add(f, argv[++i]);
      if (f == 1) break;
    }
  }
  for (int k = 0; k < 2; ++k)
    if (seen[k]) setenv(kSecretEnv[k], values[k].c_str(), 1);
  return out;
}

// Runs `mpirun -np np <extra> <this command line>` as a child, forwards SIGTERM / SIGINT to it as
// SIGUSR2 (graceful drain), watches for stopped ranks, and exits with its status (128 + the signal when
// a command that does not drain was stopped by one).
// With `node` (a --nnodes job), the other nodes' events and this node's SIGTERM go through it.
// drain_seconds (--shutdown-timeout; < 0 for commands that do not drain): a rank still stopped that
// long plus kDrainGraceSeconds after the SIGTERM is killed, naming it. first_rank: the world rank of
// this node's first rank (--nnodes).
[[noreturn]] void run_under_mpirun(int np, const std::vector<std::string>& mapping, const std::vector<std::string>& extra,
                                   double watchdog_seconds, double drain_seconds,
                                   const std::function<void()>& at_exit, NodeControl* node = nullptr,
                                   int first_rank = 0) {
  const char* env_launcher = std::getenv("DPSERVE_MPIRUN");
  std::string mpirun = env_launcher && *env_launcher ? env_launcher : find_in_path("mpirun");
  if (mpirun.empty())
    fail("{} ranks requested (--tp-size / --dp-size) but mpirun was not found on PATH; install openmpi-bin "
         "(scripts/install-deps.sh) or start dpserve under your MPI launcher",
         np);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {mpirun, "-np", std::to_string(np), "--oversubscribe"};
  args.insert(args.end(), mapping.begin(), mapping.end());
  if (geteuid() == 0) args.push_back("--allow-run-as-root");
  args.insert(args.end(), extra.begin(), extra.end());
  // Keys go to the ranks in their environment, never on their command lines (any local user can
  // read /proc/PID/cmdline) nor in the launch line logged below: mpirun exports them with -x.
  const std::vector<std::string> forwarded = move_secrets_to_environment(g_argv);
  for (const char* env : {kSecretEnv[0], kSecretEnv[1], "DPSERVE_DIST_SECRET", "DPSERVE_NODE_EVENT_FILE", kMpiListenAddressEnv})
    if (std::getenv(env)) {
      args.push_back("-x");
      args.push_back(env);
    }
  // A rank that exits non-zero takes the job down (the default, stated for clarity).
  args.push_back(self);
  for (size_t i = 1; i < forwarded.size(); ++i) args.push_back(forwarded[i]);
  spdlog::info("starting {} ranks: {}", np, [&] {
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
  const pid_t launcher = getpid();
  pid_t child = fork();
  if (child < 0) fail("cannot fork to start {}: {}", mpirun, std::strerror(errno));
  if (child == 0) {
    sigprocmask(SIG_UNBLOCK, &block, nullptr);
    // mpirun in a process group of its own: Ctrl-C (SIGINT to the terminal's foreground group) or a
    // SIGTERM to this launcher's whole group (`kill -TERM -PGID`) reach only this launcher, which
    // drains the job; mpirun, signalled with it, killed the ranks at once (exit 1, no drain). mpirun
    // does not read a terminal it is in the background of (Open MPI checks tcgetpgrp), so it is not
    // stopped by SIGTTIN. Under systemd, KillMode=mixed (docs/distributed.md).
    setpgid(0, 0);
    // This launcher killed (SIGKILL, OOM): mpirun gets SIGTERM and stops its ranks, instead of
    // leaving them waiting on the other nodes. If the launcher died before the prctl, now.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != launcher) _exit(143);
    execv(mpirun.c_str(), cargs.data());
    std::fprintf(stderr, "dpserve: cannot execute %s: %s\n", mpirun.c_str(), std::strerror(errno));
    _exit(127);
  }
  setpgid(child, child);  // also here, so no signal to this group can reach mpirun before its exec
  // Half the watchdog: a stopped rank is named here before the others' watchdog ends the job
  // without knowing which rank it waited for.
  StoppedRankWatch watch(child, np, watchdog_seconds / 2, first_rank, /*tell_rank0=*/drain_seconds >= 0);
  if (node) node->started(child);
  double drain_began = 0;        // steady seconds of the first SIGTERM / SIGINT, 0 before
  int stop_signal = 0;           // that signal
  bool drain_overdue = false;    // the drain's deadline + grace passed (stopped ranks were killed)
  const auto now = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  while (true) {
    int status = 0;
    pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child) {
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // A command that does not drain (generate, bench offline): its ranks end on the forwarded SIGUSR2 and
      // mpirun reports a failure (status 140). The user asked for the stop, so exit as the signal would have
      // ended a single process: 130 for Ctrl-C, 143 for SIGTERM.
      if (code != 0 && stop_signal != 0 && drain_seconds < 0) {
        std::fprintf(stderr, "dpserve: stopped by %s\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
        code = 128 + stop_signal;
      }
      if (code != 0 && drain_began == 0 && !watch.killed_any() && !(node && node->stopping()))
        // mpirun says when a rank failed; when mpirun itself was signalled it ends the job silently.
        std::fprintf(stderr,
                     "dpserve: the job ended with status %d (mpirun's) without this launcher stopping it: a rank "
                     "failed (mpirun names it above) or mpirun itself was signalled (SIGTERM / SIGINT to mpirun "
                     "end the job without a drain; signal this process, pid %d, to drain)\n",
                     code, int(launcher));
      if (node) node->finished(code);
      if (at_exit) at_exit();
      std::exit(code);
    }
    watch.poll();
    if (node) node->poll();
    if (drain_began > 0 && drain_seconds >= 0 && !drain_overdue &&
        now() - drain_began > drain_seconds + kDrainGraceSeconds) {
      drain_overdue = true;
      // A stopped rank holds the others in a collective: the drain cannot end (with
      // --watchdog-timeout 0 never). Rank 0 ends the job itself 2 s later if nothing is stopped here.
      if (watch.stop_stopped_ranks() == 0)
        std::fprintf(stderr, "dpserve: the drain has not ended %.0f s after the signal (--shutdown-timeout + %.0f s) "
                             "and no rank on this machine is stopped; rank 0 ends the job if its step loop is stuck\n",
                     drain_seconds + kDrainGraceSeconds, kDrainGraceSeconds);
    }
    timespec ts{0, 100 * 1000 * 1000};
    siginfo_t info;
    int sig = sigtimedwait(&block, &info, &ts);
    if ((sig == SIGTERM || sig == SIGINT) && drain_began > 0) {
      // Forwarded once only: rank 0 already drains, and mpirun restores SIGUSR2's default action
      // while it tears the job down, so a second SIGUSR2 in that window killed mpirun itself (the
      // launcher then exited 140 after a clean drain; seen when a supervisor repeats its SIGTERM).
      std::fprintf(stderr, "dpserve: %s again: the drain is already under way (it ends within --shutdown-timeout)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
    } else if (sig == SIGTERM || sig == SIGINT) {
      drain_began = now();
      stop_signal = sig;
      if (node)
        node->terminate_requested();
      else
        kill(child, SIGUSR2);
    }
  }
}

// The --numa plan for the `ranks` of this machine, printed line by line: the mapping arguments for
// mpirun. HWLOC_SYNTHETIC / HWLOC_XMLFILE in the environment stand for the machine (hwloc and
// mpirun both honour them), which is how the plans of other machines are tried on this one.
NumaPlan numa_plan_for(int ranks, const NumaRequest& numa, int threads) {
  const NumaPlan plan = plan_numa(read_node_layout(), numa, ranks, threads);
  for (const std::string& line : plan.describe()) spdlog::info("{}", line);
  return plan;
}

// A self_bind plan: each rank's CPUs travel in DPSERVE_RANK_CPUS (mpirun -x).
std::vector<std::string> self_bind_args(const NumaPlan& plan) {
  if (!plan.self_bind) return {};
  setenv("DPSERVE_RANK_CPUS", plan.rank_cpus_env().c_str(), 1);
  return {"-x", "DPSERVE_RANK_CPUS"};
}

// Node 0: Open MPI's ompi-server (the rendezvous service MPI_Comm_connect / accept across separately
// started mpiruns needs), its out-of-band channel on the --dist-init-addr address. Returns its pid and
// URI.
std::pair<pid_t, std::string> start_ompi_server(const std::string& ip, const std::string& dir, double timeout) {
  const std::string exe = find_in_path("ompi-server");
  if (exe.empty()) fail("--nnodes: node 0 needs Open MPI's ompi-server on PATH (package openmpi-bin)");
  const std::string uri_file = dir + "/ompi-server.uri";
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) fail("cannot fork to start ompi-server: {}", std::strerror(errno));
  if (pid == 0) {
    // It dies with this launcher (SIGKILL, OOM) instead of listening on, reparented to init.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(143);
    // Keep it on the address the other nodes were told, unless the user chose interfaces.
    if (!std::getenv("OMPI_MCA_oob_tcp_if_include")) setenv("OMPI_MCA_oob_tcp_if_include", (ip + "/32").c_str(), 1);
    execl(exe.c_str(), exe.c_str(), "--no-daemonize", "--report-uri", uri_file.c_str(), (char*)nullptr);
    _exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (true) {
    std::ifstream in(uri_file);
    std::string uri;
    if (in && std::getline(in, uri) && !uri.empty()) return {pid, uri};
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) fail("ompi-server exited before it reported its address");
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout) {
      kill(pid, SIGKILL);
      fail("ompi-server did not report its address within {} s (--dist-timeout)", timeout);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// This machine's interface that carries traffic to ip (node 0's --dist-init-addr) and its address
// there: the source address the kernel picks for it (a UDP "connect" sends nothing), then the
// interface holding that address. Empty names when it cannot be told.
struct LocalInterface {
  std::string name;
  std::string ip;
};
LocalInterface interface_towards(const std::string& ip, int port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return {};
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(uint16_t(port));
  inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
  sockaddr_in local{};
  socklen_t len = sizeof local;
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0;
  close(fd);
  if (!ok) return {};
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return {};
  LocalInterface out;
  for (ifaddrs* i = ifs; i && out.name.empty(); i = i->ifa_next)
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
        reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == local.sin_addr.s_addr)
      out.name = i->ifa_name;
  freeifaddrs(ifs);
  char text[INET_ADDRSTRLEN] = {};
  if (!out.name.empty() && inet_ntop(AF_INET, &local.sin_addr, text, sizeof text)) out.ip = text;
  return out;
}

// True when the user picked Open MPI's interfaces (or hosts) themselves: then dpserve leaves them,
// and its listening sockets, as the user set them.
bool user_chose_mpi_network() {
  for (const char* v : {"OMPI_MCA_btl_tcp_if_include", "OMPI_MCA_btl_tcp_if_exclude", "OMPI_MCA_oob_tcp_if_include",
                        "OMPI_MCA_oob_tcp_if_exclude", "OMPI_MCA_orte_default_hostfile"})
    if (std::getenv(v)) return true;
  return false;
}

// Open MPI 4.1 binds its TCP listeners (the ranks' TCP BTL, mpirun's and ompi-server's out-of-band
// channel) to 0.0.0.0 and [::] whatever *_if_include says. Narrow them to `ip`, the job's own address
// (listen_address.h): the ranks read it from the environment and narrow their MPI_Init binds; mpirun
// and ompi-server, started from here, get libdpserve_mpi_listen.so (built beside this binary)
// preloaded; their IPv6 listeners go to ::1 (the job's addresses are IPv4). The user's
// DPSERVE_MPI_LISTEN_ADDRESS wins; "any" keeps Open MPI's wildcard binds.
void narrow_mpi_listeners(std::string ip) {
  const bool user_set = std::getenv(kMpiListenAddressEnv) != nullptr;
  if (const char* user = std::getenv(kMpiListenAddressEnv)) {
    if (std::string(user) == "any") {
      spdlog::info("{}=any: Open MPI's listening sockets stay on every address", kMpiListenAddressEnv);
      return;
    }
    ListenAddress parsed;
    if (!parse_listen_address(user, &parsed))
      fail("{}={}: must be an IPv4 address of this host, or \"any\" for every address", kMpiListenAddressEnv, user);
    ip = user;
  }
  if (ip.empty()) {
    spdlog::info("Open MPI's listening sockets stay on every address (the user chose the MPI network, or its "
                 "interface is unknown; set {} to an address of this host to narrow them)",
                 kMpiListenAddressEnv);
    return;
  }
  const std::filesystem::path lib =
      std::filesystem::read_symlink("/proc/self/exe").parent_path() / "libdpserve_mpi_listen.so";
  if (std::filesystem::exists(lib)) {
    const char* pre = std::getenv("LD_PRELOAD");
    const std::string list = lib.string() + (pre && *pre ? std::string(":") + pre : std::string());
    setenv("LD_PRELOAD", list.c_str(), 1);
  } else {
    spdlog::warn("{} is missing (it is built beside dpserve): mpirun's own listening sockets stay on every address",
                 lib.string());
  }
  setenv(kMpiListenAddressEnv, ip.c_str(), 1);
  // Said at info level where it is news (another machine's address, or the user's choice); the
  // one-machine default would add a line to every `generate`.
  const bool news = ip != "127.0.0.1" || user_set;
  spdlog::log(news ? spdlog::level::info : spdlog::level::debug,
              "Open MPI's listening sockets on {} only ({}; \"any\" for every address)", ip, kMpiListenAddressEnv);
}

// MPI's traffic (TCP BTL) and Open MPI's own control channel (OOB) on the interface that reaches
// node 0, unless the user chose: not every interface of the host, and on one machine loopback works
// (Open MPI leaves lo out by default, so two node jobs on one host had no path: "BTLs attempted:
// self"). The variables reach mpirun and its ranks through the environment.
void use_job_interface(const HostPort& addr) {
  const char* chosen[] = {"OMPI_MCA_btl_tcp_if_include", "OMPI_MCA_btl_tcp_if_exclude", "OMPI_MCA_oob_tcp_if_include",
                          "OMPI_MCA_oob_tcp_if_exclude"};
  const std::string dev = interface_towards(resolve_ipv4(addr.host, "--dist-init-addr"), addr.port).name;
  if (dev.empty()) {
    spdlog::warn("--dist-init-addr {}: cannot tell which interface reaches it; Open MPI picks its own", addr.str());
    return;
  }
  if (!std::getenv(chosen[0]) && !std::getenv(chosen[1])) setenv(chosen[0], dev.c_str(), 1);
  if (!std::getenv(chosen[2]) && !std::getenv(chosen[3])) setenv(chosen[2], dev.c_str(), 1);
  spdlog::info("MPI over interface {} (the one that reaches {}): btl_tcp_if_include={}, oob_tcp_if_include={}", dev,
               addr.str(), std::getenv(chosen[0]) ? std::getenv(chosen[0]) : "(if_exclude set)",
               std::getenv(chosen[2]) ? std::getenv(chosen[2]) : "(if_exclude set)");
}

}  // namespace

void check_node_flags(NodeJoinOptions& n, int world) {
  if (n.nnodes < 1) fail("--nnodes {}: must be at least 1", n.nnodes);
  if (n.node_rank < 0 || n.node_rank >= n.nnodes)
    fail("--node-rank {} is out of range for --nnodes {}: give each node one of 0..{}", n.node_rank, n.nnodes,
         n.nnodes - 1);
  if (n.nnodes == 1) return;
  if (n.dist_init_addr.empty())
    fail("--nnodes {} needs --dist-init-addr HOST:PORT (an address of node 0 that every node can reach)", n.nnodes);
  parse_host_port(n.dist_init_addr, "--dist-init-addr");
  if (world % n.nnodes != 0)
    fail("{} ranks (--tp-size / --dp-size) cannot be spread evenly over --nnodes {}", world, n.nnodes);
  if (n.timeout_seconds <= 0) fail("--dist-timeout {}: must be positive", n.timeout_seconds);
  n.secret = load_dist_secret(n.secret_file);
}

void relaunch_node_job(const NodeJoinOptions& n, int world, double watchdog_seconds, double drain_seconds,
                       const NumaRequest& numa, int threads) {
  if (launched_under_mpi()) return;  // already this node's job (or the user's own launcher)
  const NumaPlan plan = numa_plan_for(world / n.nnodes, numa, threads);
  const HostPort addr = parse_host_port(n.dist_init_addr, "--dist-init-addr");
  std::unique_ptr<RendezvousServer> rendezvous;
  std::string uri;
  if (n.node_rank != 0) uri = rendezvous_get(addr, n.secret, "ompi_server", n.timeout_seconds, "--dist-timeout");
  // Holds ompi-server's URI file for this node's mpirun; removed when the job ends (or start-up fails).
  const std::string dir = make_node_dir();
  pid_t server = -1;
  narrow_mpi_listeners(user_chose_mpi_network()
                           ? std::string()
                           : interface_towards(resolve_ipv4(addr.host, "--dist-init-addr"), addr.port).ip);
  if (n.node_rank == 0) {
    try {
      const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
      rendezvous = std::make_unique<RendezvousServer>(addr, n.secret, n.heartbeat_timeout);
      std::tie(server, uri) = start_ompi_server(ip, dir, n.timeout_seconds);
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      throw;
    }
    rendezvous->set("ompi_server", uri);
    spdlog::info("node 0 of {}: rendezvous at {}, ompi-server {}", n.nnodes, addr.str(), uri);
  } else {
    spdlog::info("node {} of {}: joining through {} (ompi-server {})", n.node_rank, n.nnodes, addr.str(), uri);
  }
  const std::string uri_file = dir + "/ompi-server.uri";
  std::ofstream(uri_file) << uri << "\n";
  use_job_interface(addr);
  auto cleanup = [server, dir] {
    if (server > 0) {
      kill(server, SIGTERM);
      waitpid(server, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  };
  // The ranks read the secret from the environment (mpirun -x), never from their command line; the
  // reason of a node loss from the event file.
  setenv("DPSERVE_DIST_SECRET", n.secret.c_str(), 1);
  const std::string event_file = dir + "/node-event";
  setenv("DPSERVE_NODE_EVENT_FILE", event_file.c_str(), 1);
  std::unique_ptr<NodeControl> control;
  try {
    control = std::make_unique<NodeControl>(n, rendezvous.get(), event_file, drain_seconds);
  } catch (...) {
    cleanup();
    throw;
  }
  std::vector<std::string> extra = {"--ompi-server", "file:" + uri_file};
  for (auto& a : self_bind_args(plan)) extra.push_back(a);
  run_under_mpirun(world / n.nnodes, plan.mpirun_args, extra, watchdog_seconds, drain_seconds, cleanup, control.get(),
                   n.node_rank * (world / n.nnodes));
}

void relaunch_under_mpirun_if_needed(int world, double watchdog_seconds, const NumaRequest& numa, int threads,
                                     double drain_seconds) {
  if (launched_under_mpi()) {
    // The user's launcher placed the ranks; each rank prints and pins to what it was given.
    if (numa.mode != NumaRequest::kAuto)
      spdlog::warn("--numa {} applies to the ranks dpserve starts itself; under your own mpirun use its --map-by / "
                   "--bind-to (see docs/distributed.md)",
                   numa_flag_str(numa));
    return;
  }
  const NumaPlan plan = numa_plan_for(std::max(1, world), numa, threads);
  // One machine: Open MPI's TCP on loopback and its listeners there too. Also for one rank: MpiRuntime
  // starts it as an isolated singleton with the self transport only (comm.cpp), so it listens on
  // nothing, unless the environment chose another transport or an orted; then these keep it on loopback.
  if (!user_chose_mpi_network()) {
    setenv("OMPI_MCA_btl_tcp_if_include", "lo", 1);
    setenv("OMPI_MCA_oob_tcp_if_include", "lo", 1);
    narrow_mpi_listeners("127.0.0.1");
  } else {
    narrow_mpi_listeners("");
  }
  if (world <= 1) {
    // One rank, no mpirun: it binds itself to the plan's CPUs before any thread starts.
    if (plan.bound) {
      cpu_set_t set;
      CPU_ZERO(&set);
      for (int c : plan.ranks[0].cpus) CPU_SET(c, &set);
      if (sched_setaffinity(0, sizeof set, &set) != 0)
        fail("--numa {}: cannot bind to cpus {}: {}", numa_flag_str(numa), format_cpu_list(plan.ranks[0].cpus),
             std::strerror(errno));
    }
    return;
  }
  run_under_mpirun(world, plan.mpirun_args, self_bind_args(plan), watchdog_seconds, drain_seconds, nullptr);
}

}  // namespace dpserve::app
