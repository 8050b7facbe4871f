// Anthropic Messages API requests (/v1/messages, /v1/messages/count_tokens) -> the chat request the
// engine already serves. Every field is checked (what this server cannot do is a 400 naming it); the
// system prompt, messages and their content blocks (text, images, tool_use, tool_result, thinking)
// become chat messages, custom tools become function tools, tool_choice / thinking / output_config
// become their chat forms; the chat parser then makes the GenSpec and its errors are renamed to the
// Messages parameters.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/request_parse.h"

namespace dpserve {

struct MessagesRequest {
  GenSpec spec;
  bool stream = false;
  // spec.model is the model as the request named it (echoed in the Message); spec.stop its
  // stop_sequences (which tell a stop_sequence end from end_turn).
};

// Whether a top-level field of this name is known to /v1/messages (`count_tokens`: to its
// count_tokens route, which takes the prompt's fields only).
bool is_messages_field(std::string_view name, bool count_tokens);

// `count_tokens`: the body of /v1/messages/count_tokens (no max_tokens, no sampling fields).
MessagesRequest parse_messages_request(const nlohmann::json& body, std::string_view raw_body, const ParseContext& ctx,
                                       bool count_tokens);

}  // namespace dpserve
