// Thread pinning for --numa: the CPUs ThreadTeam workers pin themselves to when they start.
#pragma once

#include <vector>

namespace dpserve {

// CPUs the worker threads of teams made from now on pin themselves to: worker i (i >= 1) to
// cpus[i % size] (--numa: a bound rank's CPUs, so the memory they first touch is the rank's node).
// Member 0, the calling thread, keeps its affinity. Empty (the default): no pinning.
void set_team_worker_cpus(std::vector<int> cpus);
// Pins the calling thread to one CPU; false if the kernel refused.
bool pin_this_thread(int cpu);

}  // namespace dpserve
