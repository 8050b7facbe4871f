// The tiny TCP rendezvous behind `--dist-init-addr HOST:PORT`, and the nodes' control links through
// it. Node 0's launcher keeps a table of a few strings (the ompi-server URI, the MPI port name its
// rank 0 opened); other nodes fetch them. It carries no model data: everything after the join goes
// through MPI. Each other node's launcher also keeps one connection open to it (WATCH): heartbeats
// both ways, so a node whose job ended, whose process died or whose link went silent is noticed by
// the others within the heartbeat timeout, and a SIGTERM on any node reaches node 0 as DRAIN.
//
// Every connection starts with an HMAC-SHA256 challenge-response over the nodes' shared secret
// (dist_secret.h), both ways: without it nothing can be read or set, and a node only trusts a
// rendezvous that proved it holds the secret too. Lines, one per message:
//   server: "DPSERVE-RDV 1 <server nonce>"
//   client: "AUTH <client nonce> <hmac(secret, "client|" sn "|" cn)>"
//   server: "OK <hmac(secret, "server|" sn "|" cn)>"  |  "ERR <why>" and close
//   client: "GET key" -> "OK value" | "WAIT";  "SET key value" -> "OK";  "WATCH node" -> "OK", then
//           "PING" both ways every second, "DRAIN" (node -> 0), "END status" (either way: that
//           node's job ended with this exit status).
// The server answers every connection from one poll loop with a 5 s deadline to authenticate and ask,
// so idle or slow connections never hold up a join.
#pragma once

#include <memory>
#include <string>
#include <vector>

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

// What a control link reports to its launcher.
struct NodeEvent {
  enum Kind { kLost, kDrain, kEnded } kind;
  int node = 0;         // the node it concerns
  int status = 0;       // kEnded: that node's job's exit status
  std::string why;      // kLost: what was seen
};

class RendezvousServer {
 public:
  // Listens on addr (the address must be one of this machine's); an error names it otherwise.
  // A watching node silent for heartbeat_timeout seconds is reported lost.
  RendezvousServer(const HostPort& addr, std::string secret, double heartbeat_timeout);
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;
  void set(const std::string& key, const std::string& value);
  // Events since the last call (from the watching nodes).
  std::vector<NodeEvent> take_events();
  // Tells every watching node that this node's job ended with `status`; waits (up to a second) until
  // it is sent.
  void broadcast_end(int status);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A node's (1..) link to node 0's rendezvous: connects and authenticates (retrying an unreachable
// rendezvous for up to timeout_seconds), then heartbeats on its own thread. Node 0 is reported lost
// when the link closes without its END, or is silent for heartbeat_timeout seconds.
class NodeLink {
 public:
  NodeLink(const HostPort& addr, std::string secret, int node_rank, double heartbeat_timeout, double timeout_seconds);
  ~NodeLink();
  NodeLink(const NodeLink&) = delete;
  NodeLink& operator=(const NodeLink&) = delete;
  std::vector<NodeEvent> take_events();
  bool connected() const;
  void send_drain();
  void send_end(int status);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Asks the rendezvous at addr for key until it is there, retrying unreachable or not-yet-set for at
// most timeout_seconds; then an error naming the address, what was waited for and `flag`. A rendezvous
// that refuses this node's secret (or cannot prove it holds it) is an error at once.
std::string rendezvous_get(const HostPort& addr, const std::string& secret, const std::string& key,
                           double timeout_seconds, const std::string& timeout_flag);
// Stores key = value at the rendezvous (node 0's rank 0 publishing its MPI port).
void rendezvous_set(const HostPort& addr, const std::string& secret, const std::string& key, const std::string& value,
                    double timeout_seconds);

}  // namespace dpserve
