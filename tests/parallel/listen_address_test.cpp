// Narrowing Open MPI's wildcard binds to the job's address (src/parallel/listen_address.h,
// mpi_listen_hook.h): the pure rewrite, and the interposed bind() of this very executable.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "parallel/listen_address.h"
#include "parallel/mpi_listen_hook.h"

namespace dpserve {
namespace {

sockaddr_in v4(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

std::string text_of(const sockaddr_storage& s) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (s.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&s)->sin_addr, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&s)->sin6_addr, buf, sizeof buf);
  return buf;
}

TEST(ListenAddress, ParsesIpv4Only) {
  ListenAddress a;
  EXPECT_TRUE(parse_listen_address("10.77.0.1", &a));
  EXPECT_EQ(a.v4.s_addr, inet_addr("10.77.0.1"));
  for (const char* bad : {"", "any", "::1", "localhost", "10.0.0", "10.0.0.1 "})
    EXPECT_FALSE(parse_listen_address(bad, &a)) << bad;
  EXPECT_FALSE(parse_listen_address(nullptr, &a));
}

TEST(ListenAddress, NarrowsWildcardsKeepsThePort) {
  ListenAddress to;
  ASSERT_TRUE(parse_listen_address("10.77.0.2", &to));
  sockaddr_storage out;
  socklen_t len = 0;
  const sockaddr_in any = v4("0.0.0.0", 1024);
  ASSERT_TRUE(narrow_wildcard_bind(reinterpret_cast<const sockaddr*>(&any), sizeof any, to, &out, &len));
  EXPECT_EQ(len, socklen_t(sizeof(sockaddr_in)));
  EXPECT_EQ(text_of(out), "10.77.0.2");
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in*>(&out)->sin_port), 1024);

  sockaddr_in6 any6{};
  any6.sin6_family = AF_INET6;
  any6.sin6_port = htons(4242);
  any6.sin6_addr = in6addr_any;
  ASSERT_TRUE(narrow_wildcard_bind(reinterpret_cast<const sockaddr*>(&any6), sizeof any6, to, &out, &len));
  EXPECT_EQ(out.ss_family, AF_INET6);
  EXPECT_EQ(text_of(out), "::1");
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in6*>(&out)->sin6_port), 4242);
}

TEST(ListenAddress, LeavesChosenAddressesAlone) {
  ListenAddress to;
  ASSERT_TRUE(parse_listen_address("10.77.0.2", &to));
  sockaddr_storage out;
  socklen_t len = 0;
  const sockaddr_in chosen = v4("192.168.1.5", 80);
  EXPECT_FALSE(narrow_wildcard_bind(reinterpret_cast<const sockaddr*>(&chosen), sizeof chosen, to, &out, &len));
  sockaddr_in6 lo6{};
  lo6.sin6_family = AF_INET6;
  lo6.sin6_addr = in6addr_loopback;
  EXPECT_FALSE(narrow_wildcard_bind(reinterpret_cast<const sockaddr*>(&lo6), sizeof lo6, to, &out, &len));
  sockaddr unix_addr{};
  unix_addr.sa_family = AF_UNIX;
  EXPECT_FALSE(narrow_wildcard_bind(&unix_addr, sizeof unix_addr, to, &out, &len));
  // Too short to be what it claims: not read.
  const sockaddr_in any = v4("0.0.0.0", 1);
  EXPECT_FALSE(narrow_wildcard_bind(reinterpret_cast<const sockaddr*>(&any), 4, to, &out, &len));
}

// The bound address of a socket bound to 0.0.0.0:0 through this executable's bind().
std::string bind_wildcard() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in any = v4("0.0.0.0", 0);
  EXPECT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&any), sizeof any), 0) << std::strerror(errno);
  sockaddr_storage got{};
  socklen_t len = sizeof got;
  getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len);
  close(fd);
  return text_of(got);
}

TEST(MpiListenHook, NarrowsOnlyInsideTheScope) {
  setenv(kMpiListenAddressEnv, "127.0.0.1", 1);
  EXPECT_EQ(bind_wildcard(), "0.0.0.0");  // outside: the HTTP server's --host 0.0.0.0 stays
  const int before = mpi_listen_binds_narrowed();
  {
    MpiListenNarrowing scope;
    EXPECT_EQ(bind_wildcard(), "127.0.0.1");
  }
  EXPECT_EQ(mpi_listen_binds_narrowed(), before + 1);
  EXPECT_EQ(bind_wildcard(), "0.0.0.0");
  setenv(kMpiListenAddressEnv, "any", 1);  // the user's way to keep Open MPI's wildcard binds
  {
    MpiListenNarrowing scope;
    EXPECT_EQ(bind_wildcard(), "0.0.0.0");
  }
  unsetenv(kMpiListenAddressEnv);
}

}  // namespace
}  // namespace dpserve
