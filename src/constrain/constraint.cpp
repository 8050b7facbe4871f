#include "constrain/constraint.h"

#include "constrain/gbnf_compiler.h"
#include "constrain/json_schema_compiler.h"
#include "constrain/regex_compiler.h"
#include "constrain/structural_tag.h"
#include "constrain/tool_call_grammar.h"
#include "core/check.h"

namespace dpserve::constrain {

const char* constraint_kind_name(ConstraintKind k) {
  switch (k) {
    case ConstraintKind::kJsonSchema: return "json_schema";
    case ConstraintKind::kJsonObject: return "json_object";
    case ConstraintKind::kRegex: return "regex";
    case ConstraintKind::kEbnf: return "ebnf";
    case ConstraintKind::kToolCalls: return "tool_calls";
    case ConstraintKind::kStructuralTag: return "structural_tag";
  }
  return "?";
}

namespace {

Grammar grammar_of(const ConstraintSpec& spec, const JsonSchemaOptions& json) {
  switch (spec.kind) {
    case ConstraintKind::kJsonSchema: return json_schema_grammar(spec.text, json);
    case ConstraintKind::kJsonObject: return json_object_grammar(json);
    case ConstraintKind::kRegex: return regex_grammar(spec.text);
    case ConstraintKind::kEbnf: return gbnf_grammar(spec.text);
    case ConstraintKind::kToolCalls: return tool_call_grammar(ToolCallSpec::from_text(spec.text), json);
    case ConstraintKind::kStructuralTag: return structural_tag_grammar(spec.text, json);
  }
  fail("unknown constraint kind {}", int(spec.kind));
}

}  // namespace

std::shared_ptr<const Automaton> compile_constraint(const ConstraintSpec& spec, const JsonSchemaOptions& json) {
  Grammar g = grammar_of(spec, json);
  add_reasoning_prefix(g, spec.prefix);
  return Automaton::build(g);
}

}  // namespace dpserve::constrain
