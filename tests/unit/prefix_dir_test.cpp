// kv/prefix_dir.h: what a rank does to its --kv-cache-dir at start. A directory it creates is
// private (the files hold every client's prompts); a second holder of a rank's lock is refused; temp
// files of dead writers of the rank are removed, no others.
#include "kv/prefix_dir.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "core/check.h"

namespace dpserve {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/prefix-dir-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

mode_t mode_of(const std::string& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

TEST(PrefixDir, CreatedDirectoriesAreOwnerOnly) {
  TempDir t;
  ::umask(022);
  const std::string dir = t.path + "/a/b";
  PrefixDir d(dir, 3);
  EXPECT_EQ(d.file(), dir + "/rank3.kvcache");
  EXPECT_EQ(mode_of(t.path + "/a"), 0700u);
  EXPECT_EQ(mode_of(dir), 0700u);
}

TEST(PrefixDir, AnExistingDirectoryKeepsItsMode) {
  TempDir t;
  ASSERT_EQ(::chmod(t.path.c_str(), 0755), 0);
  PrefixDir d(t.path, 0);
  EXPECT_EQ(mode_of(t.path), 0755u);
}

TEST(PrefixDir, AFileInItsPlaceIsAnErrorNamingTheFlag) {
  TempDir t;
  const std::string f = t.path + "/file";
  ASSERT_EQ(::close(::creat(f.c_str(), 0600)), 0);
  try {
    PrefixDir d(f, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-cache-dir"), std::string::npos) << e.what();
  }
}

TEST(PrefixDir, ASecondHolderOfARankIsRefusedNamingTheFlagAndThePid) {
  TempDir t;
  auto d = std::make_unique<PrefixDir>(t.path, 0);
  PrefixDir other_rank(t.path, 1);  // ranks of one job share the directory
  try {
    PrefixDir again(t.path, 0);  // another open file description: flock refuses it as another process's
    FAIL() << "a second holder of rank 0 was not refused";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--kv-cache-dir"), std::string::npos) << m;
    EXPECT_NE(m.find("pid " + std::to_string(::getpid())), std::string::npos) << m;
  }
  d.reset();  // released with its holder (a crashed process's lock goes with it too)
  PrefixDir after(t.path, 0);
  EXPECT_TRUE(after.warning().empty());
}

// A pid no process has (a child that has exited and been reaped).
pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ::waitpid(p, nullptr, 0);
  return p;
}

TEST(PrefixDir, TempFilesOfDeadWritersOfThisRankAreRemoved) {
  TempDir t;
  const pid_t dead = dead_pid();
  auto touch = [&](const std::string& name) { ::close(::creat((t.path + "/" + name).c_str(), 0600)); };
  const std::string mine_dead = "rank0.kvcache.tmp." + std::to_string(dead);
  const std::string mine_live = "rank0.kvcache.tmp." + std::to_string(::getppid());  // being written, maybe
  const std::string other_rank = "rank1.kvcache.tmp." + std::to_string(dead);     // rank 1's business
  const std::string not_a_temp = "rank0.kvcache.tmp.x";
  for (const auto& n : {mine_dead, mine_live, other_rank, not_a_temp}) touch(n);
  PrefixDir d(t.path, 0);
  EXPECT_EQ(d.removed_temps(), 1);
  EXPECT_FALSE(std::filesystem::exists(t.path + "/" + mine_dead));
  for (const auto& n : {mine_live, other_rank, not_a_temp}) EXPECT_TRUE(std::filesystem::exists(t.path + "/" + n)) << n;
}

}  // namespace
}  // namespace dpserve
