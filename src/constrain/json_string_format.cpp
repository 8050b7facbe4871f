#include "constrain/json_string_format.h"

#include <array>
#include <utility>

namespace dpserve::constrain {
namespace {

constexpr const char* kDate =
    "[1-9][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)";
constexpr const char* kTime = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
constexpr const char* kLabel = "[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?";

std::string ipv6() {
  const std::string h = "[0-9a-fA-F]{1,4}";
  return "(?:(?:" + h + ":){7}" + h + "|(?:" + h + ":){1,7}:|(?:" + h + ":){1,6}:" + h + "|(?:" + h + ":){1,5}(?::" + h +
         "){1,2}|(?:" + h + ":){1,4}(?::" + h + "){1,3}|(?:" + h + ":){1,3}(?::" + h + "){1,4}|(?:" + h + ":){1,2}(?::" +
         h + "){1,5}|" + h + ":(?:(?::" + h + "){1,6})|:(?:(?::" + h + "){1,7}|:))";
}

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
  // RFC 4291 text forms without an embedded IPv4 address or zone (zod's z.ipv6() pattern, which
  // ajv-formats' ipv6 accepts too).
  if (format == "ipv6") return ipv6();
  // zod v4's own formats: each is the regular expression zod checks it by (zod's regexes.ts), which
  // zod also writes beside it as `pattern`.
  if (format == "cidrv4") {
    const std::string octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
    return "(?:" + octet + "\\.){3}" + octet + "/(?:[0-9]|[1-2][0-9]|3[0-2])";
  }
  if (format == "cidrv6") return ipv6() + "/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])";
  if (format == "cuid") return std::string("[cC][0-9a-z]{6,}");
  if (format == "cuid2") return std::string("[0-9a-z]+");
  if (format == "nanoid") return std::string("[a-zA-Z0-9_-]{21}");
  if (format == "ulid") return std::string("[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}");
  if (format == "xid") return std::string("[0-9a-vA-V]{20}");
  if (format == "ksuid") return std::string("[A-Za-z0-9]{27}");
  if (format == "e164") return std::string("\\+[1-9][0-9]{6,14}");
  if (format == "hex") return std::string("[0-9a-fA-F]*");
  if (format == "base64") return std::string("(?:[0-9a-zA-Z+/]{4})*(?:[0-9a-zA-Z+/]{2}==|[0-9a-zA-Z+/]{3}=)?");
  if (format == "base64url") return std::string("(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?");
  if (format == "lowercase") return std::string("[^A-Z]*");
  if (format == "uppercase") return std::string("[^a-z]*");
  return std::nullopt;
}

bool json_string_format_in_pattern(std::string_view format) {
  return format == "starts_with" || format == "ends_with" || format == "includes";
}

bool json_string_format_implies(std::string_view format, std::string_view pattern) {
  // zod v4's z.hostname() and z.iso.duration() patterns (lookaheads, which no automaton here runs).
  // Every string our format pattern matches also matches these: hostname labels of at most 22
  // characters, 7 of them (well under 253 in all); durations P<n>D or PT<n>H / M / S.
  static constexpr std::string_view kZodHostname =
      "^(?=.{1,253}\\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[-0-9a-zA-Z]{0,61}[0-9a-zA-Z])?)*\\.?$";
  static constexpr std::string_view kZodDuration =
      "^P(?:(\\d+W)|(?!.*W)(?=\\d|T\\d)(\\d+Y)?(\\d+M)?(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+([.,]\\d+)?S)?)?)$";
  return (format == "hostname" && pattern == kZodHostname) || (format == "duration" && pattern == kZodDuration);
}

}  // namespace dpserve::constrain
