#include "parallel/listen_address.h"

#include <arpa/inet.h>

#include <cstring>

namespace dpserve {

bool parse_listen_address(const char* text, ListenAddress* out) {
  if (!text || !*text) return false;
  in_addr a{};
  if (inet_pton(AF_INET, text, &a) != 1) return false;
  out->v4 = a;
  return true;
}

bool narrow_wildcard_bind(const sockaddr* addr, socklen_t len, const ListenAddress& to, sockaddr_storage* out,
                          socklen_t* out_len) {
  if (!addr) return false;
  if (addr->sa_family == AF_INET && len >= socklen_t(sizeof(sockaddr_in))) {
    sockaddr_in a;
    std::memcpy(&a, addr, sizeof a);
    if (a.sin_addr.s_addr != htonl(INADDR_ANY)) return false;
    a.sin_addr = to.v4;
    std::memset(out, 0, sizeof *out);
    std::memcpy(out, &a, sizeof a);
    *out_len = sizeof a;
    return true;
  }
  if (addr->sa_family == AF_INET6 && len >= socklen_t(sizeof(sockaddr_in6))) {
    sockaddr_in6 a;
    std::memcpy(&a, addr, sizeof a);
    if (!IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) return false;
    // ::1 whatever `to` is: the job's addresses are IPv4, and Open MPI gives up its TCP transport
    // when its IPv6 listener cannot be created, so it gets one that only this host can reach.
    a.sin6_addr = in6addr_loopback;
    std::memset(out, 0, sizeof *out);
    std::memcpy(out, &a, sizeof a);
    *out_len = sizeof a;
    return true;
  }
  return false;
}

}  // namespace dpserve
