// Renders a parsed Jinja template with Jinja2's semantics for the subset chat templates use
// (Undefined, scoping of for-loops, namespace(), loop.*, filters, tests, str / dict methods).
#pragma once

#include <string>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

// `globals` is the render context (a dict). Errors throw dpserve::Error naming the construct.
std::string render(const Body& body, const Value& globals);

}  // namespace dpserve::jinja
