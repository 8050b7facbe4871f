// Jinja2's tests (`x is defined`, `x is divisibleby 3`, ...), one table from name to function.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

// `v is <name>(args)`; an unknown test is an error naming it.
bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, int line);

}  // namespace dpserve::jinja
