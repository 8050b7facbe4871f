// JSON text kept as a model wrote it: a member's text cut out of an object, and whitespace dropped
// outside strings, so that numbers past 64 bits or with trailing zeros reach the client unchanged
// (parsing and printing again would turn them into doubles).
#pragma once

#include <string>
#include <string_view>

namespace dpserve {

// The text of member `key` of the JSON object `obj` (valid JSON, already parsed once), exactly as
// written; empty when there is no such member.
std::string_view member_text(std::string_view obj, std::string_view key);

// JSON text without the whitespace outside its strings (what nlohmann's dump() prints, numbers
// untouched).
std::string compact_json(std::string_view t);

}  // namespace dpserve
