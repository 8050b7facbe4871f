#include "core/shared_dir.h"

#include <cstdlib>

namespace dpserve {

std::string shared_dir() {
  if (const char* e = std::getenv("DPSERVE_SHARED_DIR"); e && *e) return e;
  return DPSERVE_SHARED_DEFAULT;
}

}  // namespace dpserve
