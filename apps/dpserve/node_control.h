// The launcher's side of a `--nnodes` job's control plane: what each node's `dpserve` (the process
// the user started, parent of its local mpirun) does when another node is lost, asks to stop, or
// ends. Node 0's launcher hears the other nodes through its rendezvous (RendezvousServer); every
// other node's launcher through its link to node 0 (NodeLink).
//
//  * another node lost (its dpserve died, its link silent past --dist-heartbeat-timeout, or its job
//    ended non-zero): the reason goes to a file the ranks know (DPSERVE_NODE_EVENT_FILE) and the job
//    gets SIGUSR1: rank 0 ends open streams with an error event and stops the job, like the watchdog.
//    A job still running 10 s later is stopped by SIGTERM, then SIGKILL.
//  * SIGTERM / SIGINT here: node 0 drains its job (SIGUSR2 to mpirun, as on one node); other nodes ask
//    node 0 to (DRAIN), since only rank 0 can drain. A job still running past the drain bound plus
//    30 s is stopped as above.
//  * another node's job ended cleanly (the job-wide stop reached it first): this node's job gets
//    20 s to end on its own too.
//  * this node's job ended: the others are told its status before this process exits.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "parallel/node_join.h"
#include "parallel/rendezvous.h"

namespace dpserve::app {

class NodeControl {
 public:
  // Node 0 passes its rendezvous; other nodes connect their link to node 0 here. `event_file`: where
  // the reason of a node loss is written for the ranks. drain_seconds: --shutdown-timeout.
  NodeControl(const NodeJoinOptions& n, RendezvousServer* server, std::string event_file, double drain_seconds);
  ~NodeControl();
  void started(pid_t child) { child_ = child; }
  // SIGTERM / SIGINT to this launcher.
  void terminate_requested();
  // Called every ~100 ms while the job runs: acts on the links' events and on overdue stops.
  void poll();
  // This node's job is being stopped from here (a node lost, a drain or stop asked): its end was said.
  bool stopping() const { return stop_at_ > 0 || failing_; }
  // The job ended with this exit status: tells the other nodes.
  void finished(int status);

 private:
  void node_lost(int node, const std::string& why);
  void stop_by(double seconds_from_now);

  NodeJoinOptions n_;
  RendezvousServer* server_ = nullptr;
  std::unique_ptr<NodeLink> link_;
  std::string event_file_;
  double drain_seconds_ = 0;
  pid_t child_ = -1;
  double stop_at_ = 0;  // > 0: SIGTERM to mpirun then, SIGKILL 5 s later
  int stop_stage_ = 0;
  bool failing_ = false;
};

}  // namespace dpserve::app
