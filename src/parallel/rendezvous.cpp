#include "parallel/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/check.h"

namespace dpserve {

namespace {

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
  while (line.size() < 4096) {
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

// One request/response exchange; "" when the rendezvous cannot be reached.
std::string exchange(const HostPort& addr, const std::string& ip, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in a = to_sockaddr(ip, addr.port);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && write_all(fd, request + "\n"))
    reply = read_line(fd, 5);
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

struct RendezvousServer::Impl {
  int fd = -1;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::string, std::string> table;
  std::thread thread;

  void serve() {
    while (!stop) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int c = accept(fd, nullptr, nullptr);
      if (c < 0) continue;
      // Requests are one short line from a peer that is already connected: answer inline.
      const std::string req = read_line(c, 2);
      std::string reply = "ERR bad request";
      if (req.rfind("GET ", 0) == 0) {
        std::lock_guard<std::mutex> lock(mu);
        auto it = table.find(req.substr(4));
        reply = it == table.end() ? "WAIT" : "OK " + it->second;
      } else if (req.rfind("SET ", 0) == 0) {
        const size_t sp = req.find(' ', 4);
        if (sp != std::string::npos) {
          std::lock_guard<std::mutex> lock(mu);
          table[req.substr(4, sp - 4)] = req.substr(sp + 1);
          reply = "OK";
        }
      }
      write_all(c, reply + "\n");
      close(c);
    }
  }
};

RendezvousServer::RendezvousServer(const HostPort& addr) : impl_(std::make_unique<Impl>()) {
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  impl_->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (impl_->fd < 0) fail("--dist-init-addr {}: socket: {}", addr.str(), std::strerror(errno));
  int one = 1;
  setsockopt(impl_->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = to_sockaddr(ip, addr.port);
  if (bind(impl_->fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(impl_->fd, 64) != 0) {
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

std::string rendezvous_get(const HostPort& addr, const std::string& key, double timeout_seconds,
                           const std::string& timeout_flag) {
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  const double end = now() + timeout_seconds;
  std::string last = "no answer (nothing listening, or the address is unreachable)";
  double sleep = 0.05;
  while (true) {
    const std::string reply = exchange(addr, ip, "GET " + key);
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

void rendezvous_set(const HostPort& addr, const std::string& key, const std::string& value, double timeout_seconds) {
  const std::string ip = resolve_ipv4(addr.host, "--dist-init-addr");
  const double end = now() + timeout_seconds;
  while (exchange(addr, ip, "SET " + key + " " + value) != "OK") {
    if (now() > end) fail("--dist-init-addr {}: cannot store {} at node 0's rendezvous", addr.str(), key);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace dpserve
