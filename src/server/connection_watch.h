// Notices that an HTTP client hung up while its request is still waiting for the engine, so the
// request can be cancelled and its KV freed even when no bytes are being written to the client.
#pragma once

#include <string>

namespace dpserve {

class ConnectionWatch {
 public:
  // Finds this process's socket connected local_addr:local_port <-> remote_addr:remote_port. Call
  // it on the thread serving that connection (so the socket stays open while it is watched); it
  // makes no system call on any other file descriptor, which other threads may be closing.
  ConnectionWatch(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);
  // True once the peer has closed the connection (or it failed). Never blocks.
  bool closed() const;
  bool found() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace dpserve
