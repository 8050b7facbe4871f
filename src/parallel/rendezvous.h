// The tiny TCP rendezvous behind `--dist-init-addr HOST:PORT`: node 0 keeps a table of a few
// strings (the ompi-server URI, the MPI port name its rank 0 opened); other nodes fetch them. It
// carries no model data: everything after the join goes through MPI.
// Protocol, one line each way per connection: "GET key" -> "OK value" | "WAIT"; "SET key value" -> "OK".
#pragma once

#include <memory>
#include <string>

namespace dpserve {

struct HostPort {
  std::string host;
  int port = 0;
  std::string str() const { return host + ":" + std::to_string(port); }
};
// "HOST:PORT" (HOST a name or IPv4 address); an error naming `flag` otherwise.
HostPort parse_host_port(const std::string& s, const std::string& flag);
// HOST's IPv4 address in dotted form (getaddrinfo); an error naming `flag` when it does not resolve.
std::string resolve_ipv4(const std::string& host, const std::string& flag);

class RendezvousServer {
 public:
  // Listens on addr (the address must be one of this machine's); an error names it otherwise.
  explicit RendezvousServer(const HostPort& addr);
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;
  void set(const std::string& key, const std::string& value);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Asks the rendezvous at addr for key until it is there, retrying unreachable or not-yet-set for at
// most timeout_seconds; then an error naming the address, what was waited for and `flag`.
std::string rendezvous_get(const HostPort& addr, const std::string& key, double timeout_seconds,
                           const std::string& timeout_flag);
// Stores key = value at the rendezvous (node 0's rank 0 publishing its MPI port).
void rendezvous_set(const HostPort& addr, const std::string& key, const std::string& value, double timeout_seconds);

}  // namespace dpserve
