// Request ids ("cmpl-…", "gen-…"): 128 random bits each, so a client cannot guess another's id and
// cancel it through /abort_request.
#pragma once

#include <string>

namespace dpserve {

std::string new_request_id(const char* prefix);
// The same bits spelled "resp_…", "msg_…", as OpenAI's Responses and Anthropic's Messages ids read.
std::string new_underscore_id(const char* prefix);

}  // namespace dpserve
