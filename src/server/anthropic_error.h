// Anthropic-style errors for the Messages API routes: {"type": "error", "error": {"type", "message"}}
// with Anthropic's type names. Every error is made in OpenAI's shape wherever it arises (a route, the
// API-key gate, cpp-httplib's own 404 / 413); those of /v1/messages/... are reshaped where the server
// sets an error body (http_server.cpp).
#pragma once

#include <string>
#include <string_view>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace dpserve {

// /v1/messages and the routes under it.
bool is_anthropic_route(std::string_view path);
// A request answered in Anthropic's shapes: one of those routes, or /v1/models[/...] asked by an
// Anthropic client (it sends anthropic-version; OpenAI's clients do not).
bool is_anthropic_request(const httplib::Request& req);

// Anthropic's error type for an HTTP status: invalid_request_error, authentication_error,
// permission_error, not_found_error, request_too_large, rate_limit_error, api_error, overloaded_error.
std::string anthropic_error_type(int status);

// An OpenAI error body ({"error": {"message", "param", ...}}) in Anthropic's shape for `status`; a
// param the message does not name is put in front of it ("tools[0].name: ...").
nlohmann::json anthropic_error_body(int status, const nlohmann::json& openai_body);

// A context_length_exceeded message in the words Anthropic's API uses, which its clients read (Claude
// Code compacts the conversation on "prompt is too long: N tokens > M maximum" and lowers max_tokens
// on "input length and `max_tokens` exceed context limit: N + K > M"); another message as it is.
std::string anthropic_context_message(const std::string& message);

// Rewrites `res`'s error body in Anthropic's shape when `req` is for one of its routes (others untouched).
void reshape_anthropic_error(const httplib::Request& req, httplib::Response& res);

}  // namespace dpserve
