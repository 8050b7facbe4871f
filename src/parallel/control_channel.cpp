#include "parallel/control_channel.h"

#include <mpi.h>

#include <chrono>
#include <thread>

#include "core/check.h"

namespace dpserve {

int64_t ControlChannel::broadcast(std::vector<std::byte>& msg) {
  ++count_;
  if (comm_.size() == 1) return int64_t(msg.size());
  MPI_Comm c = static_cast<MPI_Comm>(comm_.native_handle());
  int64_t size = comm_.rank() == root_ ? int64_t(msg.size()) : 0;
  MPI_Request req;
  MPI_Ibcast(&size, 1, MPI_INT64_T, root_, c, &req);
  if (comm_.rank() == root_) {
    MPI_Wait(&req, MPI_STATUS_IGNORE);
  } else {
    // Spin briefly (steps follow each other closely under load), then back off to sleeps.
    int flag = 0;
    auto sleep = std::chrono::microseconds(20);
    for (int spins = 0; !flag; ++spins) {
      MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
      if (flag) break;
      if (spins < 2000) continue;
      std::this_thread::sleep_for(sleep);
      if (sleep < std::chrono::microseconds(2000)) sleep *= 2;
    }
    msg.resize(size_t(size));
  }
  if (size > 0) {
    if (size > INT32_MAX) fail("control message of {} bytes is too large", size);
    MPI_Bcast(msg.data(), int(size), MPI_BYTE, root_, c);
  }
  return size;
}

namespace {
constexpr int kControlTag = 7001;
}

void send_bytes(const Comm& comm, int dest, const std::vector<std::byte>& msg) {
  if (msg.size() > size_t(INT32_MAX)) fail("control message of {} bytes is too large", msg.size());
  MPI_Send(msg.data(), int(msg.size()), MPI_BYTE, dest, kControlTag, static_cast<MPI_Comm>(comm.native_handle()));
}

std::vector<std::byte> recv_bytes(const Comm& comm, int src) {
  MPI_Comm c = static_cast<MPI_Comm>(comm.native_handle());
  MPI_Status st;
  int flag = 0;
  auto sleep = std::chrono::microseconds(20);
  for (int spins = 0;; ++spins) {
    MPI_Iprobe(src, kControlTag, c, &flag, &st);
    if (flag) break;
    if (spins < 2000) continue;
    std::this_thread::sleep_for(sleep);
    if (sleep < std::chrono::microseconds(2000)) sleep *= 2;
  }
  int n = 0;
  MPI_Get_count(&st, MPI_BYTE, &n);
  std::vector<std::byte> out(static_cast<size_t>(n));
  MPI_Recv(out.data(), n, MPI_BYTE, src, kControlTag, c, MPI_STATUS_IGNORE);
  return out;
}

}  // namespace dpserve
