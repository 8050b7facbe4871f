// The global functions chat templates call: range(), namespace(), dict(), raise_exception() (as
// transformers defines it) and strftime_now().
#pragma once

#include <string>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

// The global `name` as a callable, or undefined when there is none.
Value builtin(const std::string& name);

}  // namespace dpserve::jinja
