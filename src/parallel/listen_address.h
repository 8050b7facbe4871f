// Where Open MPI's listening sockets go. Open MPI 4.1 binds its TCP listeners (the TCP BTL's in every
// rank, the out-of-band channel's in mpirun and ompi-server) to the wildcard address whatever
// `*_if_include` says; dpserve narrows those binds to the job's own address (loopback on one machine,
// the interface that reaches --dist-init-addr across nodes), taken from DPSERVE_MPI_LISTEN_ADDRESS.
// The pure part lives here; the two interposers (mpi_listen_preload.cpp for Open MPI's programs,
// apps/dpserve/mpi_listen_hook.cpp for the ranks) call it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

namespace dpserve {

inline constexpr const char* kMpiListenAddressEnv = "DPSERVE_MPI_LISTEN_ADDRESS";

struct ListenAddress {
  in_addr v4{};
};

// Parses an IPv4 address ("127.0.0.1"); false for anything else (empty, "any", IPv6, names).
bool parse_listen_address(const char* text, ListenAddress* out);

// If `addr` is a wildcard bind (0.0.0.0, or :: for IPv6), writes the narrowed address with the same
// port into `out` / `out_len` and returns true: IPv4 -> `to`, IPv6 -> ::1. Any other address (and
// other families) is left alone: false.
bool narrow_wildcard_bind(const sockaddr* addr, socklen_t len, const ListenAddress& to, sockaddr_storage* out,
                          socklen_t* out_len);

}  // namespace dpserve
