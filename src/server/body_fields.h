// Reading the JSON bodies of the APIs translated to chat requests (OpenAI Responses, Anthropic
// Messages): fields that are absent or null alike, and the 400s that name a parameter.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dpserve {

// A 400 (unsupported_parameter): this server does not implement `param`, and why.
[[noreturn]] void unsupported(const std::string& param, const std::string& why);
// The member `name` of `o`, or null when it is absent or JSON null.
const nlohmann::ordered_json* field(const nlohmann::ordered_json& o, const char* name);
// `v` as a string, else a 400 naming `param`.
std::string need_string(const nlohmann::ordered_json& v, const std::string& param);
// Keys of `o` other than `allowed` are a 400 naming them as `param.key` (never ignored).
void only_keys(const nlohmann::ordered_json& o, const std::string& param, std::initializer_list<std::string_view> allowed);

}  // namespace dpserve
