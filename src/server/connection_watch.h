// Notices that an HTTP client hung up while its request is still waiting for the engine, so the
// request can be cancelled and its KV freed even when no bytes are being written to the client.
#pragma once

namespace dpserve {

class ConnectionWatch {
 public:
  // `fd`: the connection's socket (ConnectionState::fd), open for as long as the watch is used.
  explicit ConnectionWatch(int fd) : fd_(fd) {}
  // True once the peer has closed the connection (or it failed). Never blocks.
  bool closed() const;

 private:
  int fd_ = -1;
};

}  // namespace dpserve
