#include "server/body_fields.h"

#include <algorithm>

#include <fmt/format.h>

#include "server/openai_error.h"

namespace dpserve {

using ojson = nlohmann::ordered_json;

void unsupported(const std::string& param, const std::string& why) {
  throw ApiError(400, fmt::format("'{}' is not supported by this server: {}", param, why), param,
                 "invalid_request_error", "unsupported_parameter");
}

const ojson* field(const ojson& o, const char* name) {
  auto it = o.find(name);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

std::string need_string(const ojson& v, const std::string& param) {
  if (!v.is_string()) bad_param(param, fmt::format("'{}' must be a string", param));
  return v.get<std::string>();
}

void only_keys(const ojson& o, const std::string& param, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : o.items())
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}.{}", param, k), param + "." + k, "",
                     "unknown_parameter");
}

}  // namespace dpserve
