// One-machine launch: `dpserve ... --tp-size N` started without an MPI
// launcher re-executes itself under `mpirun -np N`, so users never type mpirun.
#pragma once

namespace dpserve::app {

// Remembers argv for a later relaunch (call first thing in main).
void remember_argv(int argc, char** argv);
// When `world` > 1 and this process was not started by an MPI launcher, runs
// `mpirun -np world ... <this command line>` as a child, forwards SIGTERM / SIGINT to it
// as SIGUSR2 (graceful drain), and exits with its status; returns otherwise. Meanwhile a rank
// that stays stopped for half of `watchdog_seconds` is killed with a message naming it
// (StoppedRankWatch; 0 = off). Throws dpserve::Error when mpirun cannot be found.
void relaunch_under_mpirun_if_needed(int world, double watchdog_seconds);

}  // namespace dpserve::app
