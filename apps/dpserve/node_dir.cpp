#include "apps/dpserve/node_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/check.h"

namespace dpserve::app {

namespace {

constexpr const char* kPrefix = "dpserve-node-";
constexpr const char* kOwnerFile = "owner";  // "<pid> <start time in clock ticks since boot>"

// Field 22 of /proc/<pid>/stat (the start time), or "" when there is no such process.
std::string start_time(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!in || !std::getline(in, s)) return "";
  const size_t close = s.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) return field;
  return "";
}

// Only a directory of ours (this user's, a real directory, not a link) whose owner file names a
// process that is gone. A directory without an owner file (an older dpserve's, or one being made
// this instant) is left alone: its launcher cannot be told.
bool stale(const std::filesystem::path& dir) {
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) return false;
  std::ifstream in(dir / kOwnerFile);
  long pid = 0;
  std::string started;
  if (!(in >> pid >> started) || pid <= 0) return false;
  return start_time(pid) != started;
}

}  // namespace

std::string make_node_dir() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/tmp", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || !stale(e.path())) continue;
    std::error_code rm;
    std::filesystem::remove_all(e.path(), rm);
    if (!rm) spdlog::info("removed {}, left by a dpserve launcher that is gone", e.path().string());
  }
  std::string tmpl = std::string("/tmp/") + kPrefix + "XXXXXX";
  if (!mkdtemp(tmpl.data())) fail("cannot create a temporary directory: {}", std::strerror(errno));
  std::ofstream(tmpl + "/" + kOwnerFile) << getpid() << " " << start_time(getpid()) << "\n";
  return tmpl;
}

}  // namespace dpserve::app
