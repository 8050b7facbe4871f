// The structured-output fields of a request -> its compiled constraint and logit bias.
// OpenAI: response_format (text | json_object | json_schema with strict), logit_bias. SGLang:
// sampling_params' regex / json_schema / ebnf (at most one). Constraints compile through the
// server's cache (by their text); one we cannot enforce is a 400 naming the field and the construct.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "constrain/constraint.h"
#include "engine/request.h"

namespace dpserve {

struct ParseContext;

// The value at `path` in the body as the client wrote it, key order kept (JSON Schema properties
// are generated in the order they were declared). Null when absent.
nlohmann::ordered_json original_subtree(std::string_view raw_body, const std::vector<std::string>& path);

// Compiles through ctx's cache; an error becomes a 400 on `param`. The harmony prefix holds for JSON
// answers only (see the definition).
std::shared_ptr<const constrain::Automaton> compile_or_400(constrain::ConstraintSpec spec,
                                                           const std::string& param, const ParseContext& ctx);

// OpenAI response_format on a chat request.
void parse_response_format(const nlohmann::json& body, std::string_view raw_body, Request& r, const ParseContext& ctx,
                           constrain::ReasoningPrefix prefix = constrain::ReasoningPrefix::kNone);
// The OpenAI routes' output constraint: response_format, or SGLang's regex / ebnf extensions (at most one).
// `prefix`: what the model may write before the constrained output (the rest of an opened <think>).
void parse_output_constraint(const nlohmann::json& body, std::string_view raw_body, Request& r, const ParseContext& ctx,
                             constrain::ReasoningPrefix prefix = constrain::ReasoningPrefix::kNone);
// SGLang's constraint fields inside sampling_params (the body's "sampling_params" object), or at the
// top of a chat / completions body (`at` ""): errors name the field where it sits.
void parse_sglang_constraint(const nlohmann::json& sp, std::string_view raw_body, Request& r, const ParseContext& ctx,
                             constrain::ReasoningPrefix prefix = constrain::ReasoningPrefix::kNone,
                             std::string_view at = "sampling_params");
// OpenAI logit_bias: {"token id": bias in [-100, 100]}.
void parse_logit_bias(const nlohmann::json& body, Request& r, const ParseContext& ctx);

}  // namespace dpserve
