// A note from the dpserve launcher to world rank 0 about a rank it is about to kill: SIGUSR1 sent
// with sigqueue, the note in the signal's value. Rank 0 then ends its open requests with the fault
// (a 500 engine_fault naming the rank, as the step watchdog does) and stops the job, before mpirun
// ends it; without the note rank 0 only saw mpirun's SIGTERM and drained, so its clients got a 200
// "abort" with cut text or "the engine stopped".
//
// Why a queued signal and not a file: it needs no file that a killed launcher would leave behind, it
// arrives in one system call however stuck rank 0's step thread is (its signal thread reads it), and
// rank 0 can check who sent it: a queued SIGUSR1 from its launcher (mpirun's parent) carrying the tag
// below. A plain SIGUSR1 (kill, or mpirun forwarding one) keeps its meaning: a --nnodes node is lost
// (node_control.h).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>

namespace dpserve::app {

// A drain (SIGTERM) that has not ended this long after --shutdown-timeout is stuck: the launcher then
// kills a rank that is still stopped (kRankDidNotStop), and rank 0 ends the job itself 2 s later if its
// step loop has not stopped (under a plain mpirun nothing else would; the launcher, which can name
// the rank, speaks first).
constexpr double kDrainGraceSeconds = 5;

enum class LauncherNote {
  kRankStopped = 1,      // a rank stayed stopped for half of --watchdog-timeout: the launcher kills it
  kRankDidNotStop = 2,   // the drain's deadline (+ grace) passed with a rank stopped: the launcher kills it
};

// Sends `note` about world rank `rank` to rank 0's process; false if it could not be sent.
bool send_launcher_note(pid_t rank0, LauncherNote note, int rank);

// For rank 0's signal thread: when `si` is a note from this rank's launcher, the message open
// requests end with (naming the rank), else "".
std::string read_launcher_note(const siginfo_t& si);

}  // namespace dpserve::app
