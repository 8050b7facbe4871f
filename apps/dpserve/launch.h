// One-machine launch: `dpserve ... --tp-size N` started without an MPI
// launcher re-executes itself under `mpirun -np N`, so users never type mpirun.
#pragma once

#include "parallel/node_join.h"
#include "parallel/numa_plan.h"

namespace dpserve::app {

// Remembers argv for a later relaunch (call first thing in main).
void remember_argv(int argc, char** argv);
// When `world` > 1 and this process was not started by an MPI launcher, runs
// `mpirun -np world ... <this command line>` as a child, forwards SIGTERM / SIGINT to it
// as SIGUSR2 (graceful drain), and exits with its status; returns otherwise. Meanwhile a rank
// that stays stopped for half of `watchdog_seconds` is killed with a message naming it
// (StoppedRankWatch; 0 = off), after rank 0 is told (launcher_note.h). Throws dpserve::Error when
// mpirun cannot be found. mpirun runs in its own process group: a signal to this process's group (Ctrl-C)
// reaches only this launcher, which drains. The ranks are mapped and bound by the --numa plan
// (numa_plan.h), printed first; a single rank (world 1) bound by the plan binds itself. `threads` is
// --threads (0 = from the plan). drain_seconds: `serve`'s --shutdown-timeout; a rank still stopped
// that long plus kDrainGraceSeconds after SIGTERM is killed, naming it (< 0: commands that do not drain).
void relaunch_under_mpirun_if_needed(int world, double watchdog_seconds, const NumaRequest& numa = {},
                                     int threads = 0, double drain_seconds = -1);

// `serve --nnodes N --node-rank R --dist-init-addr HOST:PORT`: errors naming the flag for a node rank
// out of range, a missing or malformed address, ranks that do not divide over the nodes, no shared
// secret; reads the secret into nodes.secret.
void check_node_flags(NodeJoinOptions& nodes, int world);
// N > 1 and no MPI launcher yet: node 0 starts Open MPI's ompi-server and the rendezvous at
// HOST:PORT; other nodes fetch ompi-server's address there (bounded by --dist-timeout, then an error
// naming the address). Then, like relaunch_under_mpirun_if_needed, runs this node's world / N ranks
// under `mpirun --ompi-server ...` and exits with its status (the ranks join in node_join.h).
// Meanwhile the nodes watch each other (node_control.h); drain_seconds is --shutdown-timeout.
void relaunch_node_job(const NodeJoinOptions& nodes, int world, double watchdog_seconds, double drain_seconds,
                       const NumaRequest& numa = {}, int threads = 0);

}  // namespace dpserve::app
