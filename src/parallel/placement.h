// Which host each rank runs on, for the start-up log: when a job over several machines loses one,
// Open MPI names the host ("lost communication with a remote daemon ... on node X") and this line
// says which ranks lived there.
#pragma once

#include <string>
#include <vector>

#include "parallel/comm.h"

namespace dpserve {

// Collective over `world`: every rank's host name (gethostname), in rank order, on every rank.
std::vector<std::string> gather_host_names(const Comm& world);

// "host-a: ranks 0-1; host-b: ranks 2-3": hosts in order of their first rank, consecutive ranks as
// ranges ("node1: ranks 0, 2-3").
std::string format_placement(const std::vector<std::string>& host_of_rank);

}  // namespace dpserve
