// Tool calls in the XML-like formats whose values are typed by the tool's schema, read into OpenAI's
// name and JSON arguments:
//   Qwen3-Coder (the text between <tool_call> and </tool_call>):
//     <function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n ... </function>
//   GLM-4.5 / 4.6 (and GLM-4.7, which leaves out the line breaks):
//     NAME\n<arg_key>KEY</arg_key>\n<arg_value>VALUE</arg_value>\n ...
// A value is typed by its parameter's schema (constrain::qwen3_coder_raw_string): a string is the raw
// text, anything else is read as JSON (and kept as text when it is not JSON); "null" is null where the
// schema allows a non-string. A Qwen3-Coder call must reach </function>; a value's own closing tag may
// be missing (as SGLang reads it). A GLM call's keys and values must each be closed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace dpserve {

struct CoderCall {
  std::string name;
  std::string arguments;  // a JSON object as text, keys in the order written
};

// `names[i]`'s parameters schema is `params[i]` (`params` may be empty: every value is then a string).
// Nothing when the text is not one such call of a known name (it then stays text).
std::optional<CoderCall> read_coder_call(std::string_view inner, const std::vector<std::string>& names,
                                         const std::vector<nlohmann::ordered_json>& params);
// The same for one GLM-4.5 call (the text between <tool_call> and </tool_call>).
std::optional<CoderCall> read_glm_call(std::string_view inner, const std::vector<std::string>& names,
                                       const std::vector<nlohmann::ordered_json>& params);

}  // namespace dpserve
