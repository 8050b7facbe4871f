// The self-launch's view of its ranks (apps/dpserve/launch.h): a rank process that stays stopped
// (SIGSTOP, a debugger's stop) cannot report itself, and while the others wait for it inside a
// collective they cannot tell which rank it is. The launcher can: it sees the processes mpirun
// started on this machine, and kills one that has been stopped past the grace, naming it; mpirun
// then ends the job as for any rank that dies.
#pragma once

#include <sys/types.h>

#include <map>

namespace dpserve::app {

class StoppedRankWatch {
 public:
  // Watches the `ranks` children of `mpirun`; `grace_seconds` <= 0 turns the watch off.
  StoppedRankWatch(pid_t mpirun, int ranks, double grace_seconds) : mpirun_(mpirun), n_ranks_(ranks), grace_(grace_seconds) {}
  // Call every few hundred milliseconds.
  void poll();

 private:
  struct Seen {
    int rank = -1;           // OMPI_COMM_WORLD_RANK, -1 until read
    double stopped_at = 0;   // steady seconds when first seen stopped, 0 while running
    bool killed = false;
  };
  void find_ranks();  // scans /proc for mpirun's children until all ranks are there

  pid_t mpirun_;
  int n_ranks_;
  double grace_;
  double last_poll_ = 0, last_scan_ = 0;
  std::map<pid_t, Seen> ranks_;
};

}  // namespace dpserve::app
