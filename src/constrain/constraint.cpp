#include "constrain/constraint.h"

#include "constrain/gbnf_compiler.h"
#include "constrain/json_schema_compiler.h"
#include "constrain/regex_compiler.h"
#include "constrain/tool_call_grammar.h"

namespace dpserve::constrain {

const char* constraint_kind_name(ConstraintKind k) {
  switch (k) {
    case ConstraintKind::kJsonSchema: return "json_schema";
    case ConstraintKind::kJsonObject: return "json_object";
    case ConstraintKind::kRegex: return "regex";
    case ConstraintKind::kEbnf: return "ebnf";
    case ConstraintKind::kToolCalls: return "tool_calls";
  }
  return "?";
}

std::shared_ptr<const Automaton> compile_constraint(const ConstraintSpec& spec, const JsonSchemaOptions& json) {
  switch (spec.kind) {
    case ConstraintKind::kJsonSchema: return Automaton::build(json_schema_grammar(spec.text, json));
    case ConstraintKind::kJsonObject: return Automaton::build(json_object_grammar(json));
    case ConstraintKind::kRegex: return Automaton::build(regex_grammar(spec.text));
    case ConstraintKind::kEbnf: return Automaton::build(gbnf_grammar(spec.text));
    case ConstraintKind::kToolCalls: return Automaton::build(tool_call_grammar(ToolCallSpec::from_text(spec.text), json));
  }
  return nullptr;
}

}  // namespace dpserve::constrain
