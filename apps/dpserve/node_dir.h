// The temporary directory a --nnodes launcher keeps its job's files in (ompi-server's URI, the node
// event file): /tmp/dpserve-node-XXXXXX. The launcher removes it when the job ends; one that was
// killed (SIGKILL, OOM, a reboot of the container) cannot, so each new one first removes the
// directories of launchers that are gone.
#pragma once

#include <string>

namespace dpserve::app {

// Removes the stale directories, then makes this launcher's and stamps it with its process (pid and
// start time, so a reused pid is not taken for it). Throws dpserve::Error when it cannot be made.
std::string make_node_dir();

}  // namespace dpserve::app
