#include "parallel/byte_transfers.h"

#include <mpi.h>

#include <climits>
#include <vector>

#include "core/check.h"

namespace dpserve {

struct ByteTransfers::Impl {
  std::vector<MPI_Request> reqs;
};

ByteTransfers::ByteTransfers(const Comm& comm, int tag) : comm_(comm), tag_(tag), impl_(std::make_unique<Impl>()) {}

ByteTransfers::~ByteTransfers() = default;

void ByteTransfers::send(const void* data, size_t n, int dest) {
  DP_CHECK(n <= size_t(INT_MAX), "transfer of {} bytes", n);
  impl_->reqs.emplace_back();
  MPI_Isend(data, int(n), MPI_BYTE, dest, tag_, static_cast<MPI_Comm>(comm_.native_handle()), &impl_->reqs.back());
}

void ByteTransfers::recv(void* data, size_t n, int src) {
  DP_CHECK(n <= size_t(INT_MAX), "transfer of {} bytes", n);
  impl_->reqs.emplace_back();
  MPI_Irecv(data, int(n), MPI_BYTE, src, tag_, static_cast<MPI_Comm>(comm_.native_handle()), &impl_->reqs.back());
}

void ByteTransfers::wait_all() {
  if (impl_->reqs.empty()) return;
  MPI_Waitall(int(impl_->reqs.size()), impl_->reqs.data(), MPI_STATUSES_IGNORE);
  impl_->reqs.clear();
}

size_t ByteTransfers::pending() const { return impl_->reqs.size(); }

}  // namespace dpserve
