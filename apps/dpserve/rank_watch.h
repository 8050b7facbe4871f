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
  // Watches the `ranks` children of `mpirun`; `grace_seconds` <= 0 turns the kill of a stopped rank
  // off (the ranks are still found, for stop_stopped_ranks). `first_rank`: the world rank of this
  // node's first rank (--nnodes: node rank x ranks per node), so messages name world ranks.
  // tell_rank0: rank 0 reads launcher notes (`serve`; other commands would die of the SIGUSR1).
  StoppedRankWatch(pid_t mpirun, int ranks, double grace_seconds, int first_rank = 0, bool tell_rank0 = false)
      : mpirun_(mpirun), n_ranks_(ranks), grace_(grace_seconds), first_rank_(first_rank), tell_rank0_(tell_rank0) {}
  // Call every few hundred milliseconds.
  void poll();
  // A drain's deadline passed (--shutdown-timeout + kDrainGraceSeconds): kills every rank still
  // stopped, naming it, after telling rank 0. Returns how many there were.
  int stop_stopped_ranks();
  // A rank was killed here (so the job's failure is this watch's doing, and was said).
  bool killed_any() const {
    for (auto& [pid, s] : ranks_)
      if (s.killed || s.kill_at > 0) return true;
    return false;
  }

 private:
  struct Seen {
    int rank = -1;           // world rank (OMPI_COMM_WORLD_RANK + first_rank), -1 until read
    double stopped_at = 0;   // steady seconds when first seen stopped, 0 while running
    double kill_at = 0;      // > 0: SIGKILL then (or once rank 0 has ended), after rank 0 was told
    bool killed = false;
  };
  void find_ranks();  // scans /proc for mpirun's children until all ranks are there
  // Rank `pid` is to die: rank 0, when it runs here and is not the one, is told first (launcher_note.h)
  // so that it ends its open requests with this fault; the kill follows once rank 0 has ended, or
  // kNoteSeconds later.
  void doom(pid_t pid, Seen& s, int note, double now);
  bool alive(pid_t pid) const;  // a child of mpirun, not yet a zombie

  pid_t mpirun_;
  int n_ranks_;
  double grace_;
  int first_rank_;
  bool tell_rank0_;
  double last_poll_ = 0, last_scan_ = 0;
  std::map<pid_t, Seen> ranks_;
};

}  // namespace dpserve::app
