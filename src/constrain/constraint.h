// A request's output constraint as the API carries it (the kind and its text), and the one entry
// point that compiles any kind into an Automaton.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "constrain/automaton.h"
#include "constrain/json_schema_compiler.h"
#include "constrain/reasoning_prefix.h"

namespace dpserve::constrain {

enum class ConstraintKind : uint8_t {
  kJsonSchema,  // text: a JSON Schema
  kJsonObject,  // any JSON object (text unused)
  kRegex,       // text: a regular expression the whole output must match
  kEbnf,        // text: a GBNF grammar with a `root` rule
  kToolCalls,   // text: a ToolCallSpec (tool_call_grammar.h), for tool_choice required / named
  kStructuralTag,  // text: a structural tag (structural_tag.h) as JSON
};

const char* constraint_kind_name(ConstraintKind k);

struct ConstraintSpec {
  ConstraintKind kind = ConstraintKind::kJsonSchema;
  std::string text;
  ReasoningPrefix prefix = ReasoningPrefix::kNone;  // what may come first (tool calls carry their own)
  // The compile cache key: kind, prefix and text.
  std::string key() const { return std::string{char('0' + int(kind)), char('0' + int(prefix))} + text; }
};

// Throws dpserve::Error with a message naming the unsupported or invalid construct.
std::shared_ptr<const Automaton> compile_constraint(const ConstraintSpec& spec, const JsonSchemaOptions& json = {});

}  // namespace dpserve::constrain
