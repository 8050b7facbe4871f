// kv/prefix_dir.h: what a rank does to its --kv-cache-dir at start. A directory it creates is
// private (the files hold every client's prompts).
#include "kv/prefix_dir.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
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

}  // namespace
}  // namespace dpserve
