// The --nnodes rendezvous and control links over real loopback sockets: the shared-secret
// handshake (HMAC-SHA256 checked against RFC 4231's published vectors), strangers and idle
// connections, and the node-loss events a launcher acts on.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "parallel/dist_secret.h"
#include "parallel/rendezvous.h"

namespace dpserve {
namespace {

const std::string kSecret = "a-test-secret-of-enough-bytes";

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int connect_raw(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string read_line(int fd) {
  std::string s;
  char c;
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (read(fd, &c, 1) == 1 && c != '\n') s += c;
  return s;
}

std::vector<NodeEvent> wait_events(RendezvousServer& s, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    auto ev = s.take_events();
    if (!ev.empty()) return ev;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

TEST(DistSecret, HmacSha256MatchesRfc4231) {
  // RFC 4231 test case 2 and test case 1 (key 0x0b x 20, "Hi There").
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(random_hex(16).size(), 32u);
  EXPECT_NE(random_hex(16), random_hex(16));
}

TEST(DistSecret, ReadFromFileOrEnvironmentNeverEmptyOrShort) {
  const std::string path = ::testing::TempDir() + "/dist_secret_test.txt";
  std::ofstream(path) << "0123456789abcdef-from-file\n";
  unsetenv("DPSERVE_DIST_SECRET");
  EXPECT_EQ(load_dist_secret(path), "0123456789abcdef-from-file");
  setenv("DPSERVE_DIST_SECRET", "0123456789abcdef-from-env", 1);
  EXPECT_EQ(load_dist_secret(""), "0123456789abcdef-from-env");
  EXPECT_EQ(load_dist_secret(path), "0123456789abcdef-from-file");  // the file wins
  setenv("DPSERVE_DIST_SECRET", "short", 1);
  try {
    load_dist_secret("");
    FAIL() << "a 5-byte secret was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least 16"), std::string::npos) << e.what();
  }
  unsetenv("DPSERVE_DIST_SECRET");
  try {
    load_dist_secret("");
    FAIL() << "no secret was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dist-secret-file"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("DPSERVE_DIST_SECRET"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_dist_secret(path + ".missing"), Error);
}

TEST(Rendezvous, OnlyHoldersOfTheSecretReadOrWrite) {
  const HostPort addr{"127.0.0.1", free_port()};
  RendezvousServer server(addr, kSecret, 10);
  server.set("mpi_port", "the-port");
  EXPECT_EQ(rendezvous_get(addr, kSecret, "mpi_port", 5, "--dist-timeout"), "the-port");
  // The old unauthenticated protocol gets the greeting and nothing else.
  int fd = connect_raw(addr.port);
  ASSERT_GE(fd, 0);
  const std::string hello = read_line(fd);
  EXPECT_EQ(hello.rfind("DPSERVE-RDV 1 ", 0), 0u) << hello;
  const std::string req = "SET mpi_port evil\nGET mpi_port\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), ssize_t(req.size()));
  EXPECT_EQ(read_line(fd), "ERR authentication failed");
  close(fd);
  EXPECT_EQ(rendezvous_get(addr, kSecret, "mpi_port", 5, "--dist-timeout"), "the-port");
  // Another secret: refused at once, with the flag to fix named.
  try {
    rendezvous_get(addr, "another-secret-of-enough-bytes", "mpi_port", 5, "--dist-timeout");
    FAIL() << "a wrong secret read the port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused this node's shared secret"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rendezvous_set(addr, "another-secret-of-enough-bytes", "mpi_port", "x", 2), Error);
  EXPECT_EQ(rendezvous_get(addr, kSecret, "mpi_port", 5, "--dist-timeout"), "the-port");
}

TEST(Rendezvous, IdleConnectionsDoNotHoldUpOthers) {
  const HostPort addr{"127.0.0.1", free_port()};
  RendezvousServer server(addr, kSecret, 10);
  server.set("k", "v");
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) idle.push_back(connect_raw(addr.port));
  const auto t0 = std::chrono::steady_clock::now();
  // The old server answered one connection at a time, giving each 2 s to speak: 200 s here.
  EXPECT_EQ(rendezvous_get(addr, kSecret, "k", 3, "--dist-timeout"), "v");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
  for (int fd : idle) close(fd);
}

TEST(Rendezvous, NodeLinkReportsEndDrainAndLoss) {
  const HostPort addr{"127.0.0.1", free_port()};
  RendezvousServer server(addr, kSecret, 2);
  {
    NodeLink link(addr, kSecret, 1, 2, 5);
    link.send_drain();
    auto ev = wait_events(server, 3);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].kind, NodeEvent::kDrain);
    EXPECT_EQ(ev[0].node, 1);
    link.send_end(0);
    ev = wait_events(server, 3);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].kind, NodeEvent::kEnded);
    EXPECT_EQ(ev[0].status, 0);
  }
  // A link that closes without END (its dpserve died): lost at once.
  {
    NodeLink link(addr, kSecret, 2, 2, 5);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  auto ev = wait_events(server, 3);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NodeEvent::kLost);
  EXPECT_EQ(ev[0].node, 2);
  // Node 0's end reaches the link; its close afterwards is no loss.
  NodeLink link(addr, kSecret, 3, 2, 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  server.broadcast_end(7);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto lev = link.take_events();
  ASSERT_EQ(lev.size(), 1u);
  EXPECT_EQ(lev[0].kind, NodeEvent::kEnded);
  EXPECT_EQ(lev[0].status, 7);
}

TEST(Rendezvous, ASilentNodeIsLostAfterTheHeartbeatTimeout) {
  const HostPort addr{"127.0.0.1", free_port()};
  RendezvousServer server(addr, kSecret, 2);
  // A node that authenticates, watches, then goes silent with its connection open (a cut link).
  int fd = connect_raw(addr.port);
  const std::string hello = read_line(fd);
  const std::string sn = hello.substr(std::string("DPSERVE-RDV 1 ").size());
  const std::string auth = "AUTH cn " + hmac_sha256_hex(kSecret, "client|" + sn + "|cn") + "\nWATCH 4\n";
  ASSERT_EQ(write(fd, auth.data(), auth.size()), ssize_t(auth.size()));
  EXPECT_EQ(read_line(fd).rfind("OK ", 0), 0u);
  EXPECT_EQ(read_line(fd), "OK");
  const auto t0 = std::chrono::steady_clock::now();
  auto ev = wait_events(server, 6);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NodeEvent::kLost);
  EXPECT_EQ(ev[0].node, 4);
  EXPECT_NE(ev[0].why.find("no heartbeat"), std::string::npos) << ev[0].why;
  EXPECT_GT(took, 1.0);  // not before the timeout: the server's own pings do not count as the node's
  close(fd);
}

}  // namespace
}  // namespace dpserve
