#include "parallel/mpi_listen_hook.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>

#include "parallel/listen_address.h"

namespace dpserve {
namespace {

using BindFn = int (*)(int, const sockaddr*, socklen_t);

std::atomic<bool> g_on{false};
std::atomic<int> g_narrowed{0};
ListenAddress g_to;

BindFn next_bind() {
  // The next definition after this executable's: the C library's (or a sanitizer's interceptor).
  static const BindFn f = reinterpret_cast<BindFn>(dlsym(RTLD_NEXT, "bind"));
  return f;
}

}  // namespace

MpiListenNarrowing::MpiListenNarrowing() {
  if (parse_listen_address(std::getenv(kMpiListenAddressEnv), &g_to)) g_on.store(true);
}

MpiListenNarrowing::~MpiListenNarrowing() { g_on.store(false); }

int mpi_listen_binds_narrowed() { return g_narrowed.load(); }

}  // namespace dpserve

// Exported from the executable (-Wl,--export-dynamic-symbol=bind), so Open MPI's components, loaded
// with dlopen, bind through it.
extern "C" int bind(int fd, const sockaddr* addr, socklen_t len) {
  const dpserve::BindFn real = dpserve::next_bind();
  if (dpserve::g_on.load()) {
    sockaddr_storage narrowed;
    socklen_t narrowed_len = 0;
    if (dpserve::narrow_wildcard_bind(addr, len, dpserve::g_to, &narrowed, &narrowed_len)) {
      dpserve::g_narrowed.fetch_add(1);
      return real(fd, reinterpret_cast<const sockaddr*>(&narrowed), narrowed_len);
    }
  }
  return real(fd, addr, len);
}
