// Narrows the wildcard TCP binds a rank's MPI library makes while it starts (Open MPI's TCP BTL
// listens on 0.0.0.0 and [::] whatever btl_tcp_if_include says) to DPSERVE_MPI_LISTEN_ADDRESS
// (listen_address.h). Every executable linking dpserve_parallel defines and exports `bind`, which
// narrows only inside a MpiListenNarrowing scope: the HTTP server's own bind (--host 0.0.0.0 if the
// user asks for it) is never touched.
#pragma once

namespace dpserve {

// While alive (and DPSERVE_MPI_LISTEN_ADDRESS holds an IPv4 address), wildcard binds in this
// process go to that address. Used around MPI_Init.
class MpiListenNarrowing {
 public:
  MpiListenNarrowing();
  ~MpiListenNarrowing();
  MpiListenNarrowing(const MpiListenNarrowing&) = delete;
  MpiListenNarrowing& operator=(const MpiListenNarrowing&) = delete;
};

// How many binds this process narrowed (for the start-up log line).
int mpi_listen_binds_narrowed();

}  // namespace dpserve
