#include "server/coder_tool_call.h"

#include <algorithm>
#include <set>

#include "constrain/tool_call_grammar.h"
#include "server/json_as_written.h"

namespace dpserve {

using ojson = nlohmann::ordered_json;

namespace {

constexpr std::string_view kFunction = "<function=";
constexpr std::string_view kFunctionEnd = "</function>";
constexpr std::string_view kParameter = "<parameter=";
constexpr std::string_view kParameterEnd = "</parameter>";

std::string_view trim(std::string_view s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return {};
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

bool allows(const ojson& schema, const char* type) {
  if (!schema.is_object() || !schema.contains("type")) return false;
  const ojson& t = schema["type"];
  return t == type || (t.is_array() && std::find(t.begin(), t.end(), ojson(type)) != t.end());
}

// The JSON text of one value (its template line breaks already cut), by its parameter's schema.
std::string json_value(std::string_view v, const ojson* schema) {
  const bool raw = !schema || constrain::qwen3_coder_raw_string(*schema);
  std::string lower(trim(v));
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  // A string parameter keeps the word "null" unless its schema also allows null.
  if (lower == "null" && (!raw || (schema && allows(*schema, "null")))) return "null";
  const auto as_string = [&] { return ojson(std::string(v)).dump(-1, ' ', false, ojson::error_handler_t::replace); };
  if (raw) return as_string();
  if (lower == "true" || lower == "false") {
    // Booleans in any case, as Python-minded models write them (True / False).
    if (allows(*schema, "boolean") || !schema->contains("type")) return lower;
  }
  const std::string_view t = trim(v);
  // nlohmann's reader takes a NUL byte for the end of its input, so JSON followed by a NUL and anything
  // passed (found by fuzz_chat_output); no JSON text holds a raw NUL.
  if (t.find('\0') != std::string_view::npos || !ojson::accept(t)) return as_string();
  return compact_json(t);
}

// The schema of the tool `name`'s parameter properties, or null when it has none (or `name` is not a
// tool: then `found` is false).
const ojson* tool_properties(const std::string& name, const std::vector<std::string>& names,
                             const std::vector<ojson>& params, bool& found) {
  const auto at = std::find(names.begin(), names.end(), name);
  found = at != names.end();
  if (!found) return nullptr;
  const ojson* schema = size_t(at - names.begin()) < params.size() ? &params[at - names.begin()] : nullptr;
  return schema && schema->is_object() && schema->contains("properties") && (*schema)["properties"].is_object()
             ? &(*schema)["properties"]
             : nullptr;
}

}  // namespace

std::optional<CoderCall> read_glm_call(std::string_view inner, const std::vector<std::string>& names,
                                       const std::vector<ojson>& params) {
  constexpr std::string_view kKey = "<arg_key>", kKeyEnd = "</arg_key>";
  constexpr std::string_view kValue = "<arg_value>", kValueEnd = "</arg_value>";
  std::string_view s = trim(inner);
  // The name runs to its line break (GLM-4.5) or straight to the first key (GLM-4.7).
  const size_t name_end = std::min({s.find('\n'), s.find(kKey), s.size()});
  CoderCall call;
  call.name = std::string(trim(s.substr(0, name_end)));
  bool found = false;
  const ojson* props = tool_properties(call.name, names, params, found);
  if (!found) return std::nullopt;
  s.remove_prefix(name_end);
  std::string args = "{";
  std::set<std::string, std::less<>> seen;
  for (;;) {
    s = s.substr(std::min(s.size(), s.find_first_not_of(" \t\r\n")));
    if (s.empty()) break;
    if (!s.starts_with(kKey)) return std::nullopt;
    s.remove_prefix(kKey.size());
    const size_t kend = s.find(kKeyEnd);
    if (kend == std::string_view::npos || kend == 0) return std::nullopt;
    const std::string key(s.substr(0, kend));
    if (!seen.insert(key).second) return std::nullopt;
    s.remove_prefix(kend + kKeyEnd.size());
    s = s.substr(std::min(s.size(), s.find_first_not_of(" \t\r\n")));
    if (!s.starts_with(kValue)) return std::nullopt;
    s.remove_prefix(kValue.size());
    // A value is written whole between its tags (no template line breaks): its closing tag ends it.
    const size_t vend = s.find(kValueEnd);
    if (vend == std::string_view::npos) return std::nullopt;
    const std::string_view v = s.substr(0, vend);
    s.remove_prefix(vend + kValueEnd.size());
    const ojson* prop = props && props->contains(key) ? &(*props)[key] : nullptr;
    if (args.size() > 1) args += ',';
    args += ojson(key).dump(-1, ' ', false, ojson::error_handler_t::replace) + ':' + json_value(v, prop);
  }
  call.arguments = args + "}";
  return call;
}

std::optional<CoderCall> read_coder_call(std::string_view inner, const std::vector<std::string>& names,
                                         const std::vector<ojson>& params) {
  std::string_view s = trim(inner);
  if (!s.starts_with(kFunction)) return std::nullopt;
  s.remove_prefix(kFunction.size());
  const size_t gt = s.find('>');
  if (gt == std::string_view::npos) return std::nullopt;
  CoderCall call;
  call.name = std::string(s.substr(0, gt));
  bool found = false;
  const ojson* props = tool_properties(call.name, names, params, found);
  if (!found) return std::nullopt;
  s.remove_prefix(gt + 1);
  // A call ends with its function's closing tag (an output cut off before it, by max_tokens, is no call:
  // its last value would be partial); nothing but whitespace may follow it.
  const size_t end = s.find(kFunctionEnd);
  if (end == std::string_view::npos || !trim(s.substr(end + kFunctionEnd.size())).empty()) return std::nullopt;
  s = s.substr(0, end);
  std::string args = "{";
  std::set<std::string, std::less<>> seen;
  for (;;) {
    s = s.substr(std::min(s.size(), s.find_first_not_of(" \t\r\n")));
    if (s.empty()) break;
    if (!s.starts_with(kParameter)) return std::nullopt;
    s.remove_prefix(kParameter.size());
    const size_t kgt = s.find('>');
    if (kgt == std::string_view::npos || kgt == 0) return std::nullopt;
    const std::string key(s.substr(0, kgt));
    if (key.find('\n') != std::string::npos || !seen.insert(key).second) return std::nullopt;
    s.remove_prefix(kgt + 1);
    // A value runs to its closing tag, or (the tag left out, as SGLang tolerates) to the next parameter.
    const size_t stop = std::min(s.find(kParameterEnd), s.find(kParameter));
    std::string_view v = s.substr(0, std::min(stop, s.size()));
    s.remove_prefix(v.size());
    if (s.starts_with(kParameterEnd)) s.remove_prefix(kParameterEnd.size());
    // The template puts the value on lines of its own.
    if (v.starts_with('\n')) v.remove_prefix(1);
    if (v.ends_with('\n')) v.remove_suffix(1);
    const ojson* prop = props && props->contains(key) ? &(*props)[key] : nullptr;
    if (args.size() > 1) args += ',';
    args += ojson(key).dump(-1, ' ', false, ojson::error_handler_t::replace) + ':' + json_value(v, prop);
  }
  call.arguments = args + "}";
  return call;
}

}  // namespace dpserve
