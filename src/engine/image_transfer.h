// Pipelined image transfer (DESIGN.md, "Images are inputs"; issue 18): rank 0 takes the
// materialized RGB bytes of a step's new requests out of the step message and sends them in
// bounded chunks over the following steps, point to point, to the ranks of the request's DP group
// only. The step message carries each image's size and hash, and each step's chunk list, so every
// rank of a group knows what arrives when; the chunks move while the step's forward pass runs, and
// a request is admitted on its group the step after its last byte arrived.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <deque>
#include <vector>

#include "engine/control_message.h"
#include "parallel/byte_transfers.h"
#include "parallel/comm.h"
#include "parallel/topology.h"

namespace dpserve {

// How images reach the ranks.
//  kPipelined: chunks over the following steps, to the request's DP group only (the default).
//  kStepMessage: inside the step's one control message, to every rank (before pipelining; kept for
//  the benchmark in bench/image_transfer.sh).
enum class ImageTransferMode { kPipelined, kStepMessage };
const char* to_string(ImageTransferMode m);  // "pipelined" | "step-message"

struct ImageTransferCounters {
  int64_t bytes_in = 0;     // image bytes that landed on this rank (received, or copied on rank 0)
  int64_t chunks_in = 0;
  int64_t bytes_sent = 0;   // rank 0: image bytes sent to other ranks (each destination counted)
  int64_t requests_held = 0;  // requests that waited here for their images
};

class ImageTransfer {
 public:
  ImageTransfer(const Topology& topo, const Comm& world, ImageTransferMode mode, int64_t bytes_per_step);

  // Rank 0, before the step message is encoded: moves the RGB bytes of c's new requests into the
  // send queue (their images go out without bytes, images_follow set), drops the queued bytes of
  // c's cancels, and sets c.image_chunks to this step's share of the queue (at most bytes_per_step).
  void plan(StepControl& c);
  // Rank 0: the requests' queued bytes are dropped and their chunks taken out of the plan and of c
  // (requests whose step message could not be built, so no rank holds them).
  void forget(const std::vector<NewRequest>& requests, StepControl& c);
  // Rank 0: bytes still to send (the loop must not sleep while some are).
  bool sending() const { return !queue_.empty(); }

  // Every rank of the request's group: holds a new request whose images follow until they arrived.
  void hold(NewRequest nr);
  // A held request is cancelled: dropped; returns whether it was held (and its prompt length).
  bool drop(uint64_t id, int64_t* prompt_tokens);
  // After the step's requests and cancels are applied: starts the step's chunks (`chunks` as this
  // rank's message has them; rank 0 sends what plan() chose). Receives land in the held requests.
  void start(const std::vector<ImageChunk>& chunks);
  // Before the step's report: waits until the step's chunks have moved; requests whose last byte
  // arrived become ready.
  void finish();
  // Requests whose images have all arrived, in arrival order (the same on every rank of the group).
  std::vector<NewRequest> take_ready();
  // Held requests, ready ones included (they count as waiting in the group's report).
  int64_t held() const { return int64_t(held_.size()); }
  const ImageTransferCounters& counters() const { return counters_; }

 private:
  struct Outgoing {
    uint64_t id;
    int32_t group;
    uint32_t image;
    std::shared_ptr<std::vector<uint8_t>> rgb;
    uint64_t sent = 0;  // bytes planned so far
  };
  struct Held {
    NewRequest nr;
    uint64_t missing = 0;  // bytes not yet arrived (or in flight this step)
  };
  Held& held_for(const ImageChunk& ch);

  Topology topo_;
  ImageTransferMode mode_;
  int64_t bytes_per_step_;
  std::deque<Outgoing> queue_;             // rank 0
  std::vector<ImageChunk> planned_;        // rank 0: this step's chunks, every group's
  std::vector<const uint8_t*> planned_src_;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> step_bufs_;  // rank 0: alive until finish()
  std::map<uint64_t, Held> held_;          // ids grow with arrival, so map order is arrival order
  ByteTransfers transfers_;                // this step's chunks in flight
  ImageTransferCounters counters_;
};

}  // namespace dpserve
