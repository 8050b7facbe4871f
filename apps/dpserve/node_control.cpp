#include "apps/dpserve/node_control.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

namespace dpserve::app {

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void say(const std::string& msg) {
  std::fprintf(stderr, "dpserve: %s\n", msg.c_str());
  std::fflush(stderr);
}
}  // namespace

NodeControl::NodeControl(const NodeJoinOptions& n, RendezvousServer* server, std::string event_file,
                         double drain_seconds)
    : n_(n), server_(server), event_file_(std::move(event_file)), drain_seconds_(drain_seconds) {
  if (n_.node_rank != 0)
    link_ = std::make_unique<NodeLink>(parse_host_port(n_.dist_init_addr, "--dist-init-addr"), n_.secret, n_.node_rank,
                                       n_.heartbeat_timeout, n_.timeout_seconds);
}

NodeControl::~NodeControl() = default;

void NodeControl::stop_by(double seconds_from_now) {
  const double t = now() + seconds_from_now;
  if (stop_at_ == 0 || t < stop_at_) stop_at_ = t;
}

void NodeControl::node_lost(int node, const std::string& why) {
  if (failing_) return;
  failing_ = true;
  const std::string msg = fmt::format("node {} of the --nnodes {} job is lost: {}", node, n_.nnodes, why);
  say(msg + "; stopping this node's job (node " + std::to_string(n_.node_rank) + ")");
  std::ofstream(event_file_) << msg << "\n";
  if (child_ > 0) kill(child_, SIGUSR1);
  stop_by(10);
}

void NodeControl::terminate_requested() {
  if (n_.node_rank == 0 || !link_ || !link_->connected()) {
    // Node 0 drains its job itself; another node without its link can only stop its own ranks.
    if (n_.node_rank == 0) {
      if (child_ > 0) kill(child_, SIGUSR2);
    } else {
      say("SIGTERM with no link to node 0: stopping this node's job");
      stop_by(0);
    }
  } else {
    say(fmt::format("SIGTERM on node {}: asking node 0 to drain and stop the whole job", n_.node_rank));
    link_->send_drain();
  }
  stop_by(drain_seconds_ + 30);
}

void NodeControl::poll() {
  std::vector<NodeEvent> events = server_ ? server_->take_events() : link_->take_events();
  for (const NodeEvent& e : events) {
    switch (e.kind) {
      case NodeEvent::kLost:
        node_lost(e.node, e.why);
        break;
      case NodeEvent::kDrain:
        say(fmt::format("node {} got SIGTERM: draining and stopping the whole job", e.node));
        if (child_ > 0) kill(child_, SIGUSR2);
        stop_by(drain_seconds_ + 30);
        break;
      case NodeEvent::kEnded:
        if (e.status != 0) {
          node_lost(e.node, fmt::format("its job ended with status {}", e.status));
        } else {
          // The job-wide stop reached that node first; this node's ranks follow it.
          stop_by(20);
        }
        break;
    }
  }
  if (stop_at_ > 0 && child_ > 0 && now() > stop_at_) {
    if (stop_stage_ == 0) {
      say("this node's job did not end in time: stopping it (SIGTERM to mpirun)");
      kill(child_, SIGTERM);
      stop_stage_ = 1;
      stop_at_ = now() + 5;
    } else if (stop_stage_ == 1) {
      kill(child_, SIGKILL);
      stop_stage_ = 2;
    }
  }
}

void NodeControl::finished(int status) {
  if (server_) server_->broadcast_end(status);
  if (link_) {
    link_->send_end(status);
  }
}

}  // namespace dpserve::app
