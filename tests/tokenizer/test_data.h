// Locating the shared reference data from tokenizer tests: a missing file fails the test (never skips).
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "core/shared_dir.h"

namespace dpserve::test {

inline std::string shared_path(const std::string& rel) {
  const std::string p = dpserve::shared_dir() + "/" + rel;
  if (!std::filesystem::exists(p)) {
    ADD_FAILURE() << "missing reference data " << p << " (set DPSERVE_SHARED_DIR)";
    throw std::runtime_error("missing reference data " + p);
  }
  return p;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace dpserve::test
