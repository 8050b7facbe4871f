// Jinja2's filters (`x | tojson`, `xs | map(attribute='name')`, ...) that chat templates use, as one
// table from name to function, with Jinja2's argument names and Python's semantics.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

// `v | <name>(args, kwargs)`; an unsupported filter is an error naming it.
Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& args, KwArgs& kwargs, int line);

}  // namespace dpserve::jinja
