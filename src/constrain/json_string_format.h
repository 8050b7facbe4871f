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

// zod's parameterized formats (starts_with, ends_with, includes): the text is in the `pattern` zod
// writes beside it, which alone says what the format means.
bool json_string_format_in_pattern(std::string_view format);

// Whether every string the format's pattern matches also matches `pattern` (zod's own pattern for
// that format, which uses lookaheads): the pattern then holds without being compiled.
bool json_string_format_implies(std::string_view format, std::string_view pattern);

}  // namespace dpserve::constrain
