#include "constrain/json_string_format.h"

#include <array>
#include <utility>

namespace dpserve::constrain {
namespace {

constexpr const char* kDate =
    "[1-9][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)";
constexpr const char* kTime = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
constexpr const char* kLabel = "[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?";

std::string host(int max_labels) {
  return std::string(kLabel) + "(?:\\." + kLabel + "){0," + std::to_string(max_labels) + "}";
}

}  // namespace

std::optional<std::string> json_string_format_pattern(std::string_view format) {
  if (format == "date") return std::string(kDate);
  if (format == "time") return std::string(kTime);
  if (format == "date-time") return std::string(kDate) + "T" + kTime;
  if (format == "uuid") return std::string("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  if (format == "ipv4") {
    const std::string octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    return "(?:" + octet + "\\.){3}" + octet;
  }
  // At least one dot (ajv requires it), a handful of labels (hostnames are at most 253 characters).
  if (format == "email") return std::string("[a-z0-9_+-]{1,32}(?:\\.[a-z0-9_+-]{1,32}){0,2}@") + kLabel + "(?:\\." + kLabel + "){1,4}";
  if (format == "hostname") return host(6);
  if (format == "uri") return "https?://" + host(4) + "(?:/[a-zA-Z0-9._~-]{0,32}){0,8}";
  if (format == "duration") return std::string("P(?:[0-9]{1,4}D|T[0-9]{1,4}[HMS])");
  return std::nullopt;
}

}  // namespace dpserve::constrain
