// Structural tags, the output format xgrammar defines and vLLM and SGLang accept (response_format
// type "structural_tag", vLLM's structured_outputs.structural_tag, SGLang's
// sampling_params.structural_tag): free text in which a trigger string opens a constrained region
// (a tag: begin, content, end), or more generally a tree of formats. Both shapes compile to a Grammar:
//   legacy  {"structures": [{"begin", "schema", "end"}], "triggers": [...]}
//   current {"type": "structural_tag", "format": F}, F one of const_string, json_schema, regex, grammar
//           (GBNF), any_text, sequence, or, optional, plus, star, repeat, tag, triggered_tags,
//           tags_with_separator.
// Token-level formats, `dispatch`, non-JSON `style`s, `any_order` and any_text's budgets are refused
// with an error naming them.
#pragma once

#include <string_view>

#include "constrain/grammar.h"
#include "constrain/json_schema_compiler.h"

namespace dpserve::constrain {

// Throws dpserve::Error naming the offending part by its path ("format.tags[1].begin").
Grammar structural_tag_grammar(std::string_view spec, const JsonSchemaOptions& opt = {});

}  // namespace dpserve::constrain
