// Where the reference data lives: $DPSERVE_SHARED_DIR, else the build's default
// (the `shared/` folder beside the source tree).
#pragma once

#include <string>

namespace dpserve {

std::string shared_dir();

}  // namespace dpserve
