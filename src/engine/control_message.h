// What travels between ranks each step, serialized once with msgpack:
// rank 0's control message (new requests with their DP group, cancellations,
// shutdown) and each group leader's report back (sampled tokens, finishes, loads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"

namespace dpserve {

struct NewRequest {
  uint64_t id = 0;
  int32_t group = 0;
  Request req;
};

struct StepControl {
  uint64_t step = 0;
  std::vector<NewRequest> new_requests;
  std::vector<uint64_t> cancels;
  bool shutdown = false;
};

enum class Finish : uint8_t { kNone = 0, kStop, kLength, kAbort, kError };
const char* finish_reason(Finish f);

struct OutToken {
  uint64_t id = 0;
  bool has_token = false;  // false for a finish without a new token (abort, error)
  TokenOut tok;
  Finish finish = Finish::kNone;
  std::string error;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
};

struct GroupReport {
  int32_t group = 0;
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t pages_used = 0;
  int64_t pages_total = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t prefix_query_tokens = 0;
  int64_t step_tokens = 0;
  std::vector<OutToken> outs;
  int64_t preemptions = 0;   // cumulative, this group's scheduler
  int64_t cached_pages = 0;  // pages in the prefix tree (reclaimable once no request uses them)
};

std::vector<std::byte> encode(const StepControl& c);
StepControl decode_control(const std::byte* data, size_t n);
std::vector<std::byte> encode(const GroupReport& r);
GroupReport decode_report(const std::byte* data, size_t n);

}  // namespace dpserve
