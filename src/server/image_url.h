// http(s) URLs for the remote-image allow-list, taken apart the way the image host will read them:
// scheme and host lowercased, the port made explicit, the path percent-decoded and its '.' / '..'
// segments resolved. A URL is allowed when each component equals the prefix's and the prefix's path
// segments begin its path, so "/img/../secret", "/img/%2e%2e/secret" and "/images" (for a prefix
// "/img") are told apart from what a string prefix would have let through; the server then fetches
// the normalised form, so what was compared is what is fetched.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dpserve {

struct HttpUrl {
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercased; an IPv6 address keeps its brackets
  int port = 0;        // the explicit port, else 80 / 443
  // Decoded path segments after dot-segment removal; a path ending in '/' ends with an empty
  // segment ("/" is {""}, "/a/" is {"a", ""}, "/a" is {"a"}).
  std::vector<std::string> segments;
  std::string query;  // as sent, without the '?' (empty: none)
  bool has_query = false;

  std::string origin() const;          // "http://host:port", for the HTTP client
  std::string request_target() const;  // the path re-encoded (RFC 3986 pchar), then "?query"
};

// Parses an absolute http(s) URL. Refused (nullopt, with the reason in `why`): another scheme, user
// info ("http://allowed@evil/"), an empty or malformed host or port, a malformed %-escape, an
// encoded '/', '\' or control character in the path, a raw '\', space or control character, and a
// dot segment carrying parameters ("..;", which some servers read as ".."). A fragment is dropped
// (it is never sent).
std::optional<HttpUrl> parse_http_url(std::string_view url, std::string* why = nullptr);

// True when `url` lies under `prefix`: same scheme, host and port, and the prefix's path segments
// start the URL's path on a segment boundary ("/img" covers "/img", "/img/" and "/img/a", not
// "/images"; "/img/" covers what is below "/img/"). A prefix with a query never matches.
bool url_under_prefix(const HttpUrl& url, const HttpUrl& prefix);

}  // namespace dpserve
