// The methods of Python's dict and str that chat templates call (d.items(), s.strip(), ...): looking
// one up gives a callable bound to the object, or undefined when there is no such method.
#pragma once

#include <string>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

Value dict_method(const Value& obj, const std::string& name);
Value string_method(const Value& obj, const std::string& name);

}  // namespace dpserve::jinja
