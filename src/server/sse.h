// Server-sent events framing for streamed responses: "data: <json>\n\n", ended by "data: [DONE]\n\n".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace dpserve {

std::string sse_event(const nlohmann::json& j);
std::string sse_done();

}  // namespace dpserve
