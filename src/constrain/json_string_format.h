// JSON Schema string `format`s as regular expressions over the string's content. Each pattern
// matches a subset of what both ajv-formats and Python's jsonschema accept (dates only to day 28
// of February, lowercase UUIDs, short DNS labels), so every output validates under either.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dpserve::constrain {

// The pattern (fully anchored) for a string format, or nullopt when the format is not supported.
std::optional<std::string> json_string_format_pattern(std::string_view format);

}  // namespace dpserve::constrain
