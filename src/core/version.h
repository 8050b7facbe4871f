// dpserve's version (CMake's project version), for --version, /get_server_info and the identity of
// --kv-cache-dir files: one place, so they cannot disagree.
#pragma once

namespace dpserve {

const char* dpserve_version();

}  // namespace dpserve
