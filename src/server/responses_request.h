// OpenAI Responses API requests (/v1/responses) -> the chat request the engine already serves.
// The body is validated field by field (what this server does not implement is a 400 naming it),
// `instructions` + the earlier conversation + `input` items become chat messages, the flat function
// tools become chat tools and `text.format` becomes response_format; the chat parser then makes the
// GenSpec, and its errors are renamed to the Responses parameters.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/request_parse.h"

namespace dpserve {

struct ResponsesRequest {
  GenSpec spec;
  bool stream = false;
  bool store = true;
  bool background = false;  // answered at once (queued), run on, polled and cancelled by id
  // include "message.output_text.logprobs": the message text's tokens carry their logprobs (with
  // spec.shown_top_logprobs alternatives).
  bool logprobs = false;
  std::string previous_response_id;  // "" when none
  // `conversation` (OpenAI's Conversations API): its id ("" when none); its items lead `conversation`
  // below, the first conversation_prefix of them, and what follows is appended to it at the end.
  std::string conversation_id;
  size_t conversation_prefix = 0;
  // The conversation this request continues (the previous response's), then its own input items,
  // in the Responses item shapes: what a later request with previous_response_id starts from.
  nlohmann::ordered_json conversation = nlohmann::ordered_json::array();
  // The request's settings as a Response object reports them (instructions, tools, text, ...).
  nlohmann::json echo;
};

// Whether /v1/responses knows a top-level field of this name.
bool is_responses_field(std::string_view name);
// Whether POST /v1/responses/input_tokens takes it: OpenAI's list for that route (what shapes the
// prompt: input, instructions, tools, text, previous_response_id, ...; no sampling or output fields).
bool is_input_tokens_field(std::string_view name);

// The bytes of a file of the caller's by id (the Files API), null when the caller has none.
using FileContent = std::function<std::shared_ptr<const std::string>(const std::string& file_id)>;

// `previous`: the stored conversation of a response id for this caller, nullopt when there is none
// (a 400 naming previous_response_id, code previous_response_not_found); `conversation_items`: the
// items of a conversation id of this caller, nullopt when there is none (a 404 naming conversation);
// `file_content`: what an input_image's file_id names (unset: file ids are a 400).
ResponsesRequest parse_responses_request(
    const nlohmann::json& body, std::string_view raw_body, const ParseContext& ctx,
    const std::function<std::optional<nlohmann::ordered_json>(const std::string&)>& previous,
    const std::function<std::optional<nlohmann::ordered_json>(const std::string&)>& conversation_items = {},
    const FileContent& file_content = {});

// One input item (of `input`, or added to a conversation) checked and written in the shape this
// server stores and replays; a 400 naming `param` when it is not one.
nlohmann::ordered_json normalize_input_item(const nlohmann::ordered_json& item, const std::string& param);

}  // namespace dpserve
