// The engine as the frontend sees it, in rank 0's process: enqueue a request,
// read its outputs as they come, cancel it, shut down. Thread-safe; only the
// engine's own step thread talks to the other ranks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/lora_registry.h"
#include "engine/request.h"
#include "engine/request_limits.h"

namespace dpserve {

// A request's output queue, filled by the step thread and drained by one frontend thread.
class RequestStream {
 public:
  virtual ~RequestStream() = default;
  virtual uint64_t id() const = 0;
  // Waits up to `timeout` for the next delivery; false on timeout. After a delivery with
  // finished == true there are no more.
  virtual bool next(Response& out, std::chrono::milliseconds timeout) = 0;
};

struct GroupStats {
  int32_t dp_rank = 0;
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_pages_used = 0;
  int64_t kv_pages_total = 0;
  int64_t prefix_hit_tokens = 0;    // cumulative prompt tokens served from the prefix cache
  int64_t prefix_query_tokens = 0;  // cumulative prompt tokens looked up
  int64_t preemptions = 0;          // cumulative requests pushed back to waiting because KV ran out
  int64_t kv_pages_cached = 0;      // pages in the prefix tree (reclaimable once no request uses them)
  int64_t kv_bytes_per_page = 0;    // on each rank of the group (what the attention kind stores)
  int64_t waiting_tokens = 0;       // tokens of the requests in the group's queue (SGLang's pending tokens)
  // Tokens generated per second over the last kGenThroughputWindow (SGLang's gen_throughput); 0 once
  // the group has generated nothing for that long.
  double gen_throughput = 0;
};

// The window of GroupStats::gen_throughput: long enough to smooth step jitter, short enough that an
// idle group reads 0 soon after its last token.
inline constexpr std::chrono::seconds kGenThroughputWindow{5};

struct EngineStats {
  std::vector<GroupStats> groups;
  int64_t prompt_tokens_total = 0;
  int64_t generation_tokens_total = 0;
  int64_t requests_finished_total = 0;
  int64_t pooled_outputs_total = 0;  // embedding vectors and rerank scores computed (prefill-only inputs)
  int64_t steps_total = 0;
  // Speculative decoding: drafted tokens verified, those that matched, and request-steps that verified any.
  int64_t spec_draft_tokens_total = 0;
  int64_t spec_accepted_tokens_total = 0;
  int64_t spec_verify_steps_total = 0;
};

// The outcome of a run-time LoRA load or unload: HTTP-like status (200 done; 400 refused or the
// folder could not be loaded; 404 no such adapter; 409 in use; 503 the engine is stopping) and why.
struct LoraChange {
  int status = 200;
  std::string error;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Queues a request (frontends check it against limits() first, to name the field at fault). The
  // returned stream delivers tokens as they are sampled; a request the engine cannot run, or one
  // outside limits(), ends with finish_reason "error" without reaching the ranks.
  virtual std::shared_ptr<RequestStream> enqueue(Request r) = 0;
  // Ends the request at the next step (its KV pages are freed on every rank of its group).
  virtual void cancel(uint64_t id) = 0;
  // Stops taking requests, lets running ones finish for up to `drain`, aborts the rest,
  // stops every rank. Blocks until the step thread has exited.
  virtual void shutdown(std::chrono::milliseconds drain) = 0;
  virtual bool healthy() const = 0;
  // SGLang's /flush_cache: every rank drops its prefix cache at the next step. Done only when no
  // request is queued or running anywhere (false, nothing done, otherwise).
  virtual bool flush_cache() = 0;
  // /load_lora_adapter: every rank loads the PEFT folder `path` at a step boundary, into a free slot,
  // and requests may name `name` once this returns 200; on any failure no rank keeps it. Blocks
  // until done. The caller checks the name against the served model's.
  virtual LoraChange load_lora(const std::string& name, const std::string& path) = 0;
  // /unload_lora_adapter: new requests naming it are refused at once; refused with 409 while a
  // queued or running request uses it; else every rank frees its slot and drops the slot's prefix
  // cache at a step boundary. Blocks until done.
  virtual LoraChange unload_lora(const std::string& name) = 0;
  // The adapters served now (null: none ever).
  virtual std::shared_ptr<const LoraRegistry> loras() const = 0;
  // True when requests are pending but the engine has made no step for longer than its stall
  // timeout (a stuck collective or step; /health turns 503). Never true while idle.
  virtual bool stalled() const = 0;
  virtual EngineStats stats() const = 0;
  virtual int64_t context_length() const = 0;
  virtual int32_t dp_size() const = 0;
  // What a request may ask for (vocabulary, context, parameter bounds): enqueue() refuses the rest.
  virtual const RequestLimits& limits() const = 0;
};

}  // namespace dpserve
