#include "server/connection_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

namespace dpserve {

namespace {

// An IPv4 or IPv6 address as 16 bytes (IPv4 as its IPv4-mapped IPv6 form), so both tables compare alike.
using Addr = std::array<unsigned char, 16>;

Addr mapped_v4(const unsigned char* v4) {
  Addr a{};
  a[10] = a[11] = 0xff;
  std::memcpy(a.data() + 12, v4, 4);
  return a;
}

std::optional<Addr> parse_ip(std::string s) {
  if (auto pct = s.find('%'); pct != std::string::npos) s.resize(pct);  // IPv6 zone ("fe80::1%eth0")
  unsigned char buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return mapped_v4(buf);
  Addr a{};
  if (inet_pton(AF_INET6, s.c_str(), a.data()) == 1) return a;
  return std::nullopt;
}

// "0100007F:1F90" from /proc/net/tcp[6]: the address's bytes in network order, printed as
// native-endian 32-bit words; the port in host order.
bool parse_proc_endpoint(const std::string& s, Addr* addr, int* port) {
  const auto colon = s.find(':');
  if (colon == std::string::npos || (colon != 8 && colon != 32)) return false;
  unsigned char bytes[16];
  for (size_t w = 0; w < colon / 8; ++w) {
    char* end = nullptr;
    const std::string word = s.substr(w * 8, 8);
    const uint32_t v = uint32_t(std::strtoul(word.c_str(), &end, 16));
    if (*end != '\0') return false;
    std::memcpy(bytes + 4 * w, &v, 4);
  }
  if (colon == 8) {
    *addr = mapped_v4(bytes);
  } else {
    std::memcpy(addr->data(), bytes, 16);
  }
  char* end = nullptr;
  *port = int(std::strtol(s.c_str() + colon + 1, &end, 16));
  return *end == '\0';
}

// The socket inode of the TCP connection local <-> remote in this network namespace, 0 if none.
unsigned long find_inode(const char* table, const Addr& local, int local_port, const Addr& remote, int remote_port) {
  std::ifstream in(table);
  std::string line;
  std::getline(in, line);  // column titles
  while (std::getline(in, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    std::istringstream ls(line);
    std::string sl, l, r, st, queues, timer, retr, uid, timeout;
    unsigned long inode = 0;
    if (!(ls >> sl >> l >> r >> st >> queues >> timer >> retr >> uid >> timeout >> inode)) continue;
    Addr la{}, ra{};
    int lp = -1, rp = -1;
    if (!parse_proc_endpoint(l, &la, &lp) || !parse_proc_endpoint(r, &ra, &rp)) continue;
    if (inode != 0 && lp == local_port && rp == remote_port && la == local && ra == remote) return inode;
  }
  return 0;
}

}  // namespace

ConnectionWatch::ConnectionWatch(const std::string& local_addr, int local_port, const std::string& remote_addr,
                                 int remote_port) {
  // cpp-httplib hands handlers no socket. The address pair names the connection's socket inode in
  // the kernel's TCP tables, and /proc/self/fd's links name each fd's inode: reading those links
  // is a filesystem operation, not one on the fds themselves. Our socket stays open while the
  // handler runs, so the fd found cannot be closed or reused under us.
  const auto local = parse_ip(local_addr);
  const auto remote = parse_ip(remote_addr);
  if (!local || !remote) return;
  unsigned long inode = find_inode("/proc/self/net/tcp", *local, local_port, *remote, remote_port);
  if (inode == 0) inode = find_inode("/proc/self/net/tcp6", *local, local_port, *remote, remote_port);
  if (inode == 0) return;
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    char target[64];
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = readlink(path.c_str(), target, sizeof target);
    if (n > 0 && size_t(n) == want.size() && std::memcmp(target, want.data(), want.size()) == 0) {
      fd_ = int(fd);
      break;
    }
  }
  closedir(d);
}

bool ConnectionWatch::closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace dpserve
