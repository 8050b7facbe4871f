// Non-blocking point-to-point byte transfers posted during a step and completed together later,
// so they move while the step's other work (the forward pass and its collectives) runs. Used for
// the pipelined image chunks (engine/image_transfer.h). Messages between the same two ranks arrive
// in the order they were posted.
#pragma once

#include <cstddef>
#include <memory>

#include "parallel/comm.h"

namespace dpserve {

class ByteTransfers {
 public:
  ByteTransfers(const Comm& comm, int tag);
  ~ByteTransfers();
  // `data` must stay valid (and, for receives, untouched) until wait_all(). n < 2^31.
  void send(const void* data, size_t n, int dest);
  void recv(void* data, size_t n, int src);
  // Blocks until every posted transfer has completed.
  void wait_all();
  size_t pending() const;

 private:
  struct Impl;
  const Comm& comm_;
  int tag_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpserve
