// OpenAI tools on a chat request: `tools` (functions with JSON Schema parameters), `tool_choice`
// (none / auto / required / a named function) and `parallel_tool_calls`. "required" and a named
// function are enforced by a grammar (constrain/tool_call_grammar.h) in the --tool-call-parser's
// format; "auto" leaves the model free and the output parser picks the calls out.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dpserve {

struct GenSpec;
class ChatOutputParser;
enum class ReasoningParser;
enum class ToolCallParser;
struct ParseContext;

// Validates the fields and fills spec.tool_names / spec.base.constraint. Call after the other
// constraint fields (a tool_choice that needs a grammar conflicts with response_format).
void parse_tools(const nlohmann::json& body, std::string_view raw_body, GenSpec& spec, const ParseContext& ctx);

// The parser of a chat choice's output: reasoning under `r`, the request's tools (spec.tool_names and,
// for Qwen3-Coder, their schemas) under `t`; null when there is nothing to pick out. `seed` makes the
// call ids.
std::shared_ptr<ChatOutputParser> chat_output_parser(ReasoningParser r, ToolCallParser t, const GenSpec& spec,
                                                     uint64_t seed);

// Whether the chat template should see the tools (not with tool_choice "none").
bool tools_for_template(const nlohmann::json& body);

}  // namespace dpserve
