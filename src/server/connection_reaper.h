// Closes HTTP connections whose client takes too long to send a request (headers and body):
// cpp-httplib's read timeout only bounds each single read, so a client trickling a byte at a time
// would hold its server thread forever (slowloris).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace dpserve {

class ConnectionReaper {
 public:
  // Watches this process's connections accepted on `port`. `closed` counts the ones cut off;
  // `open` is set to the number of connections at each scan. timeout <= 0: no watching at all.
  ConnectionReaper(int port, std::chrono::milliseconds timeout, std::atomic<int64_t>& closed,
                   std::atomic<int64_t>& open);
  ~ConnectionReaper();
  ConnectionReaper(const ConnectionReaper&) = delete;
  ConnectionReaper& operator=(const ConnectionReaper&) = delete;

  // A connection is "receiving" from when it is accepted (or its previous response was written)
  // until its request is in; only then does the timeout run. Called from the request's thread:
  void headers_received(const std::string& remote_addr, int remote_port, bool body_follows);
  void body_received(const std::string& remote_addr, int remote_port);
  void response_written(const std::string& remote_addr, int remote_port);

 private:
  struct Conn {
    bool receiving = true;
    std::chrono::steady_clock::time_point since;  // start of the current receiving phase
    std::chrono::steady_clock::time_point touched;
    bool seen = false;  // found by a scan at least once
  };
  void set(const std::string& remote_addr, int remote_port, bool receiving, bool restart);
  void scan();

  const int port_;
  const std::chrono::milliseconds timeout_;
  std::atomic<int64_t>& closed_;
  std::atomic<int64_t>& open_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Conn> conns_;  // by "remote_addr port"
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dpserve
