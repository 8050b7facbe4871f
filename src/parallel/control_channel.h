// The per-step control broadcast from rank 0. Receivers wait for it without
// burning a core: a non-blocking broadcast of the message size, polled with a
// short spin and then sleeps that grow to a couple of milliseconds, so an idle
// job costs almost no CPU and still wakes within a few milliseconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "parallel/comm.h"

namespace dpserve {

class ControlChannel {
 public:
  explicit ControlChannel(const Comm& comm, int root = 0) : comm_(comm), root_(root) {}

  // At the root `msg` is sent; elsewhere it is replaced by the root's message.
  // Every rank of `comm` calls it once per step. Returns the bytes moved.
  int64_t broadcast(std::vector<std::byte>& msg);

  int64_t broadcasts() const { return count_; }

 private:
  const Comm& comm_;
  int root_;
  int64_t count_ = 0;
};

// Point-to-point pieces of the `group-leader` dispatch: rank 0 sends each DP group
// leader its group's share, which the leader then re-broadcasts inside its group.
void send_bytes(const Comm& comm, int dest, const std::vector<std::byte>& msg);
// Waits (spin, then growing sleeps, as above) for a message from `src` and returns it.
std::vector<std::byte> recv_bytes(const Comm& comm, int src);

}  // namespace dpserve
