#include "core/version.h"

namespace dpserve {

// DPSERVE_VERSION is defined for this file alone (src/core/CMakeLists.txt): a version bump rebuilds one file.
const char* dpserve_version() { return DPSERVE_VERSION; }

}  // namespace dpserve
