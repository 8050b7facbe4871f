#include "server/connection_reaper.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace dpserve {

namespace {

// "addr port" of a socket address; empty for other families.
std::string endpoint(const sockaddr_storage& sa, int* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    *port = ntohs(in->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    auto* in = reinterpret_cast<const sockaddr_in6*>(&sa);
    inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
    *port = ntohs(in->sin6_port);
  } else {
    return {};
  }
  return buf;
}

std::string key(const std::string& addr, int port) { return fmt::format("{} {}", addr, port); }

}  // namespace

ConnectionReaper::ConnectionReaper(int port, std::chrono::milliseconds timeout, std::atomic<int64_t>& closed,
                                   std::atomic<int64_t>& open)
    : port_(port), timeout_(timeout), closed_(closed), open_(open) {
  if (timeout_.count() > 0) thread_ = std::thread([this] { scan(); });
}

ConnectionReaper::~ConnectionReaper() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionReaper::set(const std::string& remote_addr, int remote_port, bool receiving, bool restart) {
  if (timeout_.count() <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(mu_);
  auto [it, fresh] = conns_.try_emplace(key(remote_addr, remote_port));
  Conn& c = it->second;
  if (fresh) c.since = now;
  if (restart) c.since = now;
  c.receiving = receiving;
  c.touched = now;
}

void ConnectionReaper::headers_received(const std::string& remote_addr, int remote_port, bool body_follows) {
  // The deadline runs on from the start of the request while its body arrives.
  set(remote_addr, remote_port, body_follows, false);
}

void ConnectionReaper::body_received(const std::string& remote_addr, int remote_port) {
  set(remote_addr, remote_port, false, false);
}

void ConnectionReaper::response_written(const std::string& remote_addr, int remote_port) {
  // Keep-alive: the next request's clock starts now (an idle keep-alive connection is closed by
  // cpp-httplib's keep-alive timeout first).
  set(remote_addr, remote_port, true, true);
}

void ConnectionReaper::scan() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, std::chrono::milliseconds(250));
    if (stop_) break;
    lk.unlock();
    // This process's sockets accepted on our port: fd and peer. Read without the lock, since
    // /proc and the socket calls take a while with many connections.
    std::vector<std::pair<int, std::string>> socks;
    if (DIR* d = opendir("/proc/self/fd")) {
      while (dirent* e = readdir(d)) {
        char* end = nullptr;
        long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
        struct stat st;
        if (fstat(int(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        sockaddr_storage local{}, peer{};
        socklen_t ll = sizeof local, pl = sizeof peer;
        if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
        int lport = 0, pport = 0;
        if (endpoint(local, &lport).empty() || lport != port_) continue;
        if (getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;  // the listener
        std::string paddr = endpoint(peer, &pport);
        if (!paddr.empty()) socks.emplace_back(int(fd), key(paddr, pport));
      }
      closedir(d);
    }
    open_.store(int64_t(socks.size()));
    lk.lock();
    const auto now = std::chrono::steady_clock::now();
    std::set<std::string> present;
    for (const auto& [fd, k] : socks) {
      present.insert(k);
      auto [it, fresh] = conns_.try_emplace(k);
      Conn& c = it->second;
      if (fresh) c.since = c.touched = now;  // accepted since the last scan: receiving its first request
      c.seen = true;
      if (c.receiving && now - c.since > timeout_) {
        // Shut down, not closed: the thread blocked reading this request wakes up, fails it and
        // closes the socket itself (so the fd cannot be reused under that thread).
        ::shutdown(fd, SHUT_RDWR);
        closed_.fetch_add(1);
        spdlog::warn("client {} took longer than {} ms to send its request: connection closed", k, timeout_.count());
        conns_.erase(it);
      }
    }
    for (auto it = conns_.begin(); it != conns_.end();) {
      // Gone from the process; entries the hooks made for connections no scan saw yet get a grace period.
      const bool gone = !present.count(it->first) && (it->second.seen || now - it->second.touched > std::chrono::seconds(5));
      it = gone ? conns_.erase(it) : std::next(it);
    }
  }
}

}  // namespace dpserve
