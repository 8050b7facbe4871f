// SGLang-style multi-node start (`--nnodes N --node-rank R --dist-init-addr HOST:PORT`): each node's
// ranks are their own MPI job (a local mpirun started with --ompi-server); join_nodes() connects them
// into one communicator with MPI_Comm_accept / MPI_Comm_connect + MPI_Intercomm_merge, ordered by
// node rank, and makes it the world every Comm::world() returns.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dpserve {

struct NodeJoinOptions {
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;  // HOST:PORT of node 0's rendezvous
  double timeout_seconds = 120;
  std::string secret_file;     // --dist-secret-file (else DPSERVE_DIST_SECRET)
  std::string secret;          // what load_dist_secret() read from either (check_node_flags)
  double heartbeat_timeout = 10;  // a node silent this long is lost (--dist-heartbeat-timeout)
};

// Flags every node must give alike: name ("--tp-size") and value. Checked after each node joins;
// a mismatch stops the job with a message naming the flag and both values.
using NodeFlagValues = std::vector<std::pair<std::string, int64_t>>;

// Collective over this node's MPI_COMM_WORLD; returns when all nnodes nodes have joined (or stops the
// job with a message: a node not arriving within timeout_seconds, a mismatched flag, a node rank
// given twice). Afterwards the world is node 0's ranks, then node 1's, ...
void join_nodes(const NodeJoinOptions& o, const NodeFlagValues& must_match);

// After join_nodes and the model load, collective over the job's world: every node must have the
// same values (the model's identity, the KV dtype, ...), or the job stops on every node with a
// message naming the first value that differs, the node and both values (hex for names ending in
// "digest"), before anything is served.
void check_nodes_agree(const NodeJoinOptions& o, const NodeFlagValues& values);

}  // namespace dpserve
