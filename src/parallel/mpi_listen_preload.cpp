// LD_PRELOAD library for the Open MPI programs dpserve starts (mpirun, ompi-server): their wildcard
// TCP binds (the out-of-band channel listens on 0.0.0.0 and [::] whatever oob_tcp_if_include says)
// go to DPSERVE_MPI_LISTEN_ADDRESS (listen_address.h). The constructor takes the library out of
// LD_PRELOAD again, so the programs those start (the ranks, which narrow their own binds with
// mpi_listen_hook.h) do not load it. Built without sanitizers: it runs inside uninstrumented programs.
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "parallel/listen_address.h"

namespace {

using BindFn = int (*)(int, const sockaddr*, socklen_t);

bool g_on = false;
dpserve::ListenAddress g_to;

BindFn next_bind() {
  static const BindFn f = reinterpret_cast<BindFn>(dlsym(RTLD_NEXT, "bind"));
  return f;
}

// LD_PRELOAD without the entries naming this library (separated by ':' or spaces).
std::string without_self(const std::string& list) {
  std::string kept, item;
  auto flush = [&] {
    const size_t slash = item.rfind('/');
    const std::string base = slash == std::string::npos ? item : item.substr(slash + 1);
    if (!item.empty() && base != "libdpserve_mpi_listen.so") kept += (kept.empty() ? "" : ":") + item;
    item.clear();
  };
  for (char c : list) {
    if (c == ':' || c == ' ') flush();
    else item += c;
  }
  flush();
  return kept;
}

__attribute__((constructor)) void start() {
  g_on = dpserve::parse_listen_address(std::getenv(dpserve::kMpiListenAddressEnv), &g_to);
  if (const char* pre = std::getenv("LD_PRELOAD")) {
    const std::string kept = without_self(pre);
    if (kept.empty()) unsetenv("LD_PRELOAD");
    else setenv("LD_PRELOAD", kept.c_str(), 1);
  }
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int bind(int fd, const sockaddr* addr, socklen_t len) {
  if (g_on) {
    sockaddr_storage narrowed;
    socklen_t narrowed_len = 0;
    if (dpserve::narrow_wildcard_bind(addr, len, g_to, &narrowed, &narrowed_len))
      return next_bind()(fd, reinterpret_cast<const sockaddr*>(&narrowed), narrowed_len);
  }
  return next_bind()(fd, addr, len);
}
