#include "server/sse.h"

namespace dpserve {

std::string sse_event(const nlohmann::json& j) {
  // dump() never emits a raw newline, so one event is exactly one data line.
  return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace dpserve
