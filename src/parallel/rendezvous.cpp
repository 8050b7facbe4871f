#include "parallel/rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/check.h"
#include "parallel/dist_secret.h"

namespace dpserve {

namespace {

constexpr double kHandshakeSeconds = 5;  // a connection must authenticate and ask within this
constexpr double kPingSeconds = 1;       // heartbeat period on WATCH links
constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxPending = 256;      // connections not yet past their question; the oldest goes first

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

sockaddr_in to_sockaddr(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// One line (without the newline), at most 4 KiB, within `seconds`; empty on timeout or close.
std::string read_line(int fd, double seconds) {
  std::string line;
  const double end = now() + seconds;
  char c;
  while (line.size() < kMaxLine) {
    pollfd p{fd, POLLIN, 0};
    const double left = end - now();
    if (left <= 0 || poll(&p, 1, int(left * 1000) + 1) <= 0) return "";
    if (read(fd, &c, 1) != 1) return "";
    if (c == '\n') return line;
    line += c;
  }
  return "";
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

std::string client_proof(const std::string& secret, const std::string& sn, const std::string& cn) {
  return hmac_sha256_hex(secret, "client|" + sn + "|" + cn);
}
std::string server_proof(const std::string& secret, const std::string& sn, const std::string& cn) {
  return hmac_sha256_hex(secret, "server|" + sn + "|" + cn);
}

// Why a handshake failed: unreachable (retry) or refused (the secrets differ: stop).
enum class Handshake { kOk, kUnreachable, kRefused, kImpostor };

// Connects to the rendezvous and runs the challenge-response; fd >= 0 on kOk (caller closes).
Handshake open_authenticated(const std::string& ip, int port, const std::string& secret, int& fd_out,
                             std::string& detail) {
  fd_out = -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Handshake::kUnreachable;
  sockaddr_in a = to_sockaddr(ip, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return Handshake::kUnreachable;
  }
  const std::string hello = read_line(fd, kHandshakeSeconds);
  const std::string tag = "DPSERVE-RDV 1 ";
  if (hello.rfind(tag, 0) != 0) {
    close(fd);
    detail = hello.empty() ? "no greeting" : "an unexpected greeting";
    return hello.empty() ? Handshake::kUnreachable : Handshake::kImpostor;
  }
  const std::string sn = hello.substr(tag.size());
  const std::string cn = random_hex(16);
  std::string reply;
  if (write_all(fd, "AUTH " + cn + " " + client_proof(secret, sn, cn) + "\n")) reply = read_line(fd, kHandshakeSeconds);
  if (reply.rfind("ERR", 0) == 0) {
    close(fd);
    detail = reply;
    return Handshake::kRefused;
  }
  if (reply.rfind("OK ", 0) != 0) {
    close(fd);
    return Handshake::kUnreachable;
  }
  if (!equal_in_constant_time(reply.substr(3), server_proof(secret, sn, cn))) {
    close(fd);
    detail = "its answer to the challenge is wrong";
    return Handshake::kImpostor;
  }
  fd_out = fd;
  return Handshake::kOk;
}

[[noreturn]] void fail_handshake(Handshake h, const HostPort& addr, const std::string& detail) {
  if (h == Handshake::kRefused)
    fail("--dist-init-addr {}: node 0's rendezvous refused this node's shared secret ({}): give every node the same "
         "--dist-secret-file content or DPSERVE_DIST_SECRET",
         addr.str(), detail);
  fail("--dist-init-addr {}: the rendezvous there did not prove it holds the shared secret ({}): it is not node 0 "
       "of this job, or node 0 has another --dist-secret-file / DPSERVE_DIST_SECRET",
       addr.str(), detail);
}

// One request/response exchange after the handshake; "" when the rendezvous cannot be reached.
std::string exchange(const HostPort& addr, const std::string& ip, const std::string& secret,
                     const std::string& request) {
  int fd = -1;
  std::string detail;
  const Handshake h = open_authenticated(ip, addr.port, secret, fd, detail);
  if (h == Handshake::kUnreachable) return "";
  if (h != Handshake::kOk) fail_handshake(h, addr, detail);
  std::string reply;
  if (write_all(fd, request + "\n")) reply = read_line(fd, kHandshakeSeconds);
  close(fd);
  return reply;
}

}  // namespace

HostPort parse_host_port(const std::string& s, const std::string& flag) {
  const size_t colon = s.rfind(':');
  HostPort hp;
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    fail("{} {}: expected HOST:PORT, e.g. 10.0.0.1:5000", flag, s);
  hp.host = s.substr(0, colon);
  try {
    size_t used = 0;
    hp.port = std::stoi(s.substr(colon + 1), &used);
    if (used != s.size() - colon - 1) throw std::invalid_argument("port");
  } catch (const std::exception&) {
    fail("{} {}: the port must be a number", flag, s);
  }
  if (hp.port < 1 || hp.port > 65535) fail("{} {}: the port must be 1-65535", flag, s);
  return hp;
}

std::string resolve_ipv4(const std::string& host, const std::string& flag) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) fail("{}: cannot resolve host {}: {}", flag, host, gai_strerror(rc));
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
  freeaddrinfo(res);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Server: one poll loop over every connection.

struct RendezvousServer::Impl {
  enum State { kHello, kAsk, kWatch };
  struct Conn {
    int fd = -1;
    State state = kHello;
    std::string nonce, in, out;
    double opened = 0, heard = 0;
    int node = -1;
    bool ended = false;  // a WATCH link that said END: its close is expected
    bool close_after_write = false;
  };

  int fd = -1;
  std::string secret;
  double heartbeat_timeout = 10;
  std::atomic<bool> stop{false};
  std::mutex mu;  // table, conns, events (the loop holds it except while it polls)
  std::map<std::string, std::string> table;
  std::deque<Conn> conns;
  std::vector<NodeEvent> events;
  std::thread thread;

  void lost(Conn& c, const std::string& why) {
    if (c.state == kWatch && !c.ended) events.push_back({NodeEvent::kLost, c.node, 0, why});
    c.ended = true;
    close(c.fd);
    c.fd = -1;
  }

  void answer(Conn& c, const std::string& line) {
    if (c.state == kHello) {
      // "AUTH <client nonce> <proof>"
      const size_t sp = line.find(' ', 5);
      if (line.rfind("AUTH ", 0) != 0 || sp == std::string::npos ||
          !equal_in_constant_time(line.substr(sp + 1), client_proof(secret, c.nonce, line.substr(5, sp - 5)))) {
        c.out += "ERR authentication failed\n";
        c.close_after_write = true;
        return;
      }
      c.out += "OK " + server_proof(secret, c.nonce, line.substr(5, sp - 5)) + "\n";
      c.state = kAsk;
      return;
    }
    if (c.state == kAsk) {
      std::string reply = "ERR bad request";
      c.close_after_write = true;
      if (line.rfind("GET ", 0) == 0) {
        auto it = table.find(line.substr(4));
        reply = it == table.end() ? "WAIT" : "OK " + it->second;
      } else if (line.rfind("SET ", 0) == 0) {
        const size_t sp = line.find(' ', 4);
        if (sp != std::string::npos) {
          table[line.substr(4, sp - 4)] = line.substr(sp + 1);
          reply = "OK";
        }
      } else if (line.rfind("WATCH ", 0) == 0) {
        c.node = std::atoi(line.c_str() + 6);
        c.state = kWatch;
        c.heard = now();
        c.close_after_write = false;
        reply = "OK";
      }
      c.out += reply + "\n";
      return;
    }
    // kWatch
    c.heard = now();
    if (line == "DRAIN") events.push_back({NodeEvent::kDrain, c.node, 0, {}});
    if (line.rfind("END ", 0) == 0) {
      c.ended = true;
      events.push_back({NodeEvent::kEnded, c.node, std::atoi(line.c_str() + 4), {}});
    }
  }

  void accept_all() {
    while (true) {
      int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;
      // Past the cap, the oldest connection still in its handshake makes room.
      size_t pending = 0;
      for (auto& k : conns) pending += k.fd >= 0 && k.state != kWatch;
      if (pending >= kMaxPending)
        for (auto& k : conns)
          if (k.fd >= 0 && k.state != kWatch) {
            close(k.fd);
            k.fd = -1;
            break;
          }
      Conn k;
      k.fd = c;
      k.nonce = random_hex(16);
      k.opened = k.heard = now();
      k.out = "DPSERVE-RDV 1 " + k.nonce + "\n";
      conns.push_back(std::move(k));
    }
  }

  void serve() {
    double last_ping = now();
    std::vector<pollfd> fds;
    while (!stop) {
      {
        std::lock_guard<std::mutex> lock(mu);
        fds.assign(1, pollfd{fd, POLLIN, 0});
        for (auto& c : conns) fds.push_back(pollfd{c.fd, short(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
      }
      poll(fds.data(), fds.size(), 50);
      std::lock_guard<std::mutex> lock(mu);
      if (fds[0].revents & POLLIN) accept_all();
      const double t = now();
      const bool ping = t - last_ping >= kPingSeconds;
      if (ping) last_ping = t;
      for (size_t i = 0; i + 1 < fds.size() && i < conns.size(); ++i) {
        Conn& c = conns[i];
        if (c.fd < 0) continue;
        const short ev = fds[i + 1].revents;
        if (ev & POLLIN) {
          char buf[1024];
          const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
          if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) {
            lost(c, "its connection to node 0 closed");
            continue;
          }
          if (n > 0) c.in.append(buf, size_t(n));
          size_t nl;
          while (c.fd >= 0 && (nl = c.in.find('\n')) != std::string::npos) {
            const std::string line = c.in.substr(0, nl);
            c.in.erase(0, nl + 1);
            if (!c.close_after_write) answer(c, line);
          }
          if (c.in.size() > kMaxLine) {
            lost(c, "it sent a line longer than 4 KiB");
            continue;
          }
        } else if (ev & (POLLERR | POLLHUP | POLLNVAL)) {
          lost(c, "its connection to node 0 closed");
          continue;
        }
        if (c.state == kWatch && ping && !c.ended) c.out += "PING\n";
        if (!c.out.empty() && (ev & POLLOUT || ping)) {
          const ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
          if (n > 0) c.out.erase(0, size_t(n));
          else if (!(n < 0 && (errno == EAGAIN || errno == EINTR))) {
            lost(c, "its connection to node 0 broke");
            continue;
          }
        }
        if (c.close_after_write && c.out.empty()) {
          close(c.fd);
          c.fd = -1;
        } else if (c.state != kWatch && t - c.opened > kHandshakeSeconds) {
          close(c.fd);  // idle or slow: it had its chance
          c.fd = -1;
        } else if (c.state == kWatch && !c.ended && t - c.heard > heartbeat_timeout) {
          lost(c, "no heartbeat for " + std::to_string(int(heartbeat_timeout)) + " s (host down or link cut)");
        }
      }
      // Closed connections are dropped (the poll set is rebuilt each turn).
      conns.erase(std::remove_if(conns.begin(), conns.end(), [](const Conn& c) { return c.fd < 0; }), conns.end());
    }
    for (auto& c : conns)
      if (c.fd >= 0) close(c.fd);
  }
};

RendezvousServer::RendezvousServer(const HostPort& addr, std::string secret, double heartbeat_timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->secret = std::move(secret);
  impl_->heartbeat_timeout = heartbeat_timeout;
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  impl_->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (impl_->fd < 0) fail("--dist-init-addr {}: socket: {}", addr.str(), std::strerror(errno));
  int one = 1;
  setsockopt(impl_->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = to_sockaddr(ip, addr.port);
  if (bind(impl_->fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(impl_->fd, 128) != 0) {
    const std::string why = std::strerror(errno);
    close(impl_->fd);
    fail("--dist-init-addr {}: node 0 cannot listen there ({}); it must be an address of node 0 and a free port",
         addr.str(), why);
  }
  impl_->thread = std::thread([this] { impl_->serve(); });
}

RendezvousServer::~RendezvousServer() {
  impl_->stop = true;
  if (impl_->thread.joinable()) impl_->thread.join();
  close(impl_->fd);
}

void RendezvousServer::set(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->table[key] = value;
}

std::vector<NodeEvent> RendezvousServer::take_events() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return std::exchange(impl_->events, {});
}

void RendezvousServer::broadcast_end(int status) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (auto& c : impl_->conns)
      if (c.fd >= 0 && c.state == Impl::kWatch && !c.ended) c.out += "END " + std::to_string(status) + "\n";
  }
  for (int i = 0; i < 20; ++i) {
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      bool pending = false;
      for (auto& c : impl_->conns) pending |= c.fd >= 0 && c.state == Impl::kWatch && !c.out.empty();
      if (!pending) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// ---------------------------------------------------------------------------------------------
// A node's link to node 0.

struct NodeLink::Impl {
  int fd = -1;
  std::atomic<bool> stop{false}, up{false};
  std::mutex mu;  // writes to fd, events
  std::vector<NodeEvent> events;
  std::thread thread;
  double heartbeat_timeout = 10;

  void send_line(const std::string& s) {
    std::lock_guard<std::mutex> lock(mu);
    if (fd >= 0) write_all(fd, s + "\n");
  }

  void run() {
    std::string in;
    double heard = now(), last_ping = now();
    bool ended = false;
    auto report_lost = [&](const std::string& why) {
      std::lock_guard<std::mutex> lock(mu);
      if (!ended) events.push_back({NodeEvent::kLost, 0, 0, why});
      up = false;
    };
    while (!stop) {
      pollfd p{fd, POLLIN, 0};
      poll(&p, 1, 100);
      const double t = now();
      if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
        char buf[512];
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
          report_lost("its connection to this node closed without saying its job ended (its dpserve died)");
          return;
        }
        heard = t;
        in.append(buf, size_t(n));
        size_t nl;
        while ((nl = in.find('\n')) != std::string::npos) {
          const std::string line = in.substr(0, nl);
          in.erase(0, nl + 1);
          if (line.rfind("END ", 0) == 0) {
            std::lock_guard<std::mutex> lock(mu);
            ended = true;
            events.push_back({NodeEvent::kEnded, 0, std::atoi(line.c_str() + 4), {}});
          }
        }
        if (in.size() > kMaxLine) in.clear();
      }
      if (ended) continue;
      if (t - heard > heartbeat_timeout) {
        report_lost("no heartbeat for " + std::to_string(int(heartbeat_timeout)) + " s (host down or link cut)");
        return;
      }
      if (t - last_ping >= kPingSeconds) {
        last_ping = t;
        send_line("PING");
      }
    }
  }
};

NodeLink::NodeLink(const HostPort& addr, std::string secret, int node_rank, double heartbeat_timeout,
                   double timeout_seconds)
    : impl_(std::make_unique<Impl>()) {
  impl_->heartbeat_timeout = heartbeat_timeout;
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  const double end = now() + timeout_seconds;
  while (true) {
    int fd = -1;
    std::string detail;
    const Handshake h = open_authenticated(ip, addr.port, secret, fd, detail);
    if (h == Handshake::kOk) {
      std::string reply;
      if (write_all(fd, "WATCH " + std::to_string(node_rank) + "\n")) reply = read_line(fd, kHandshakeSeconds);
      if (reply == "OK") {
        impl_->fd = fd;
        break;
      }
      close(fd);
    } else if (h != Handshake::kUnreachable) {
      fail_handshake(h, addr, detail);
    }
    if (now() > end)
      fail("--dist-init-addr {}: node 0's rendezvous did not take this node's control link within {} s "
           "(--dist-timeout)", addr.str(), timeout_seconds);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  impl_->up = true;
  impl_->thread = std::thread([this] { impl_->run(); });
}

NodeLink::~NodeLink() {
  impl_->stop = true;
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->fd >= 0) close(impl_->fd);
}

std::vector<NodeEvent> NodeLink::take_events() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return std::exchange(impl_->events, {});
}

bool NodeLink::connected() const { return impl_->up; }
void NodeLink::send_drain() { impl_->send_line("DRAIN"); }
void NodeLink::send_end(int status) { impl_->send_line("END " + std::to_string(status)); }

// ---------------------------------------------------------------------------------------------

std::string rendezvous_get(const HostPort& addr, const std::string& secret, const std::string& key,
                           double timeout_seconds, const std::string& timeout_flag) {
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  const double end = now() + timeout_seconds;
  std::string last = "no answer (nothing listening, or the address is unreachable)";
  double sleep = 0.05;
  while (true) {
    const std::string reply = exchange(addr, ip, secret, "GET " + key);
    if (reply.rfind("OK ", 0) == 0) return reply.substr(3);
    if (reply == "WAIT") last = "node 0 answered but has not published its " + key + " yet";
    if (now() + sleep > end)
      fail("--dist-init-addr {}: node 0's rendezvous gave no {} within {} s ({}); start node 0 (--node-rank 0) "
           "with the same --dist-init-addr, check the address and port are reachable, or raise {}",
           addr.str(), key, timeout_seconds, last, timeout_flag);
    std::this_thread::sleep_for(std::chrono::duration<double>(sleep));
    sleep = std::min(sleep * 2, 0.5);
  }
}

void rendezvous_set(const HostPort& addr, const std::string& secret, const std::string& key, const std::string& value,
                    double timeout_seconds) {
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  const double end = now() + timeout_seconds;
  while (exchange(addr, ip, secret, "SET " + key + " " + value) != "OK") {
    if (now() > end) fail("--dist-init-addr {}: cannot store {} at node 0's rendezvous", addr.str(), key);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace dpserve
