// Helpers shared by the fuzz targets: property checks that abort (so libFuzzer and the replay
// driver both report the input) and reference data that must exist.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/shared_dir.h"

namespace dpserve::fuzz {

// A broken property is a finding, like a crash: abort with the reason.
[[noreturn]] inline void violated(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz property violated: %s at %s:%d\n", what, file, line);
  std::abort();
}

// Reference files are needed to fuzz the real tokenizers; without them the target cannot run.
inline std::string shared_file(const std::string& rel) {
  const std::string p = dpserve::shared_dir() + "/" + rel;
  if (!std::filesystem::exists(p)) {
    std::fprintf(stderr, "fuzz: missing reference data %s (set DPSERVE_SHARED_DIR)\n", p.c_str());
    std::abort();
  }
  return p;
}

}  // namespace dpserve::fuzz

#define FUZZ_EXPECT(cond)                                                   \
  do {                                                                      \
    if (!(cond)) ::dpserve::fuzz::violated(#cond, __FILE__, __LINE__);      \
  } while (0)
