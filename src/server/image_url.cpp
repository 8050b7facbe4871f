#include "server/image_url.h"

#include <cctype>

#include <fmt/format.h>

namespace dpserve {

namespace {

bool refuse(std::string* why, std::string reason) {
  if (why) *why = std::move(reason);
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 3986 pchar without '%': unreserved, sub-delims, ':' and '@'.
bool is_plain_pchar(unsigned char c) {
  if (std::isalnum(c)) return true;
  return std::string_view("-._~!$&'()*+,;=:@").find(char(c)) != std::string_view::npos;
}

bool parse_host_port(std::string_view auth, HttpUrl& u, std::string* why) {
  if (auth.find('@') != std::string_view::npos)
    return refuse(why, "user information ('user@host') is not allowed in an image URL");
  std::string_view host = auth, port;
  if (!auth.empty() && auth[0] == '[') {
    const size_t close = auth.find(']');
    if (close == std::string_view::npos) return refuse(why, "an IPv6 host without its closing ']'");
    host = auth.substr(0, close + 1);
    for (char c : host.substr(1, host.size() - 2))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return refuse(why, "an IPv6 host with other characters than hex digits, ':' and '.'");
    const std::string_view rest = auth.substr(close + 1);
    if (!rest.empty() && rest[0] != ':') return refuse(why, "characters after the IPv6 host");
    if (!rest.empty()) port = rest.substr(1);
  } else {
    const size_t colon = auth.find(':');
    if (colon != std::string_view::npos) {
      host = auth.substr(0, colon);
      port = auth.substr(colon + 1);
    }
    for (char c : host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
        return refuse(why, fmt::format("the host holds '{}' (letters, digits, '.', '-' and '_' only; no %-escapes)",
                                       std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "\\x??"));
  }
  if (host.empty() || host == "[]") return refuse(why, "no host");
  u.host.clear();
  for (char c : host) u.host.push_back(char(std::tolower(static_cast<unsigned char>(c))));
  u.port = u.scheme == "https" ? 443 : 80;
  if (!port.empty()) {  // an empty port after ':' is the default (RFC 3986 3.2.3)
    if (port.size() > 5) return refuse(why, "the port is not a number in [1, 65535]");
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return refuse(why, "the port is not a number in [1, 65535]");
      p = p * 10 + (c - '0');
    }
    if (p < 1 || p > 65535) return refuse(why, "the port is not a number in [1, 65535]");
    u.port = p;
  }
  return true;
}

// "/a/./b/../c" -> {"a", "c"}; each segment decoded before it is judged, so "%2e%2e" is "..".
bool parse_path(std::string_view path, HttpUrl& u, std::string* why) {
  std::vector<std::string> out;
  size_t at = 1;  // path[0] == '/'
  for (;;) {
    const size_t end = std::min(path.find('/', at), path.size());
    const std::string_view raw = path.substr(at, end - at);
    std::string seg;
    for (size_t i = 0; i < raw.size(); ++i) {
      const auto c = static_cast<unsigned char>(raw[i]);
      if (c == '\\') return refuse(why, "a '\\' in the path (some servers read it as '/')");
      if (c == ' ' || is_control(c)) return refuse(why, "a space or control character in the path");
      if (c != '%') {
        seg.push_back(char(c));
        continue;
      }
      if (i + 2 >= raw.size()) return refuse(why, "a '%' not followed by two hex digits");
      const int h = hex_value(raw[i + 1]), l = hex_value(raw[i + 2]);
      if (h < 0 || l < 0) return refuse(why, "a '%' not followed by two hex digits");
      const auto d = static_cast<unsigned char>(h * 16 + l);
      if (d == '/' || d == '\\' || is_control(d))
        return refuse(why, fmt::format("an encoded '{}' in the path (%{}{})",
                                       d == '/' ? "/" : d == '\\' ? "\\" : "control character", raw[i + 1], raw[i + 2]));
      seg.push_back(char(d));
      i += 2;
    }
    const bool last = end == path.size();
    if (seg.rfind(".;", 0) == 0 || seg.rfind("..;", 0) == 0)
      return refuse(why, "a dot segment with parameters ('..;') in the path");
    if (seg == "." || seg == "..") {
      if (seg == ".." && !out.empty()) out.pop_back();
      // A dot segment at the end leaves a directory: "/a/b/.." is "/a/".
      if (last) out.emplace_back();
    } else {
      out.push_back(std::move(seg));
    }
    if (last) break;
    at = end + 1;
  }
  u.segments = std::move(out);
  return true;
}

}  // namespace

std::optional<HttpUrl> parse_http_url(std::string_view url, std::string* why) {
  HttpUrl u;
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) {
    refuse(why, "not an absolute http(s) URL");
    return std::nullopt;
  }
  for (char c : url.substr(0, sep)) u.scheme.push_back(char(std::tolower(static_cast<unsigned char>(c))));
  if (u.scheme != "http" && u.scheme != "https") {
    refuse(why, "the scheme is not http or https");
    return std::nullopt;
  }
  std::string_view rest = url.substr(sep + 3);
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const size_t auth_end = std::min(rest.find_first_of("/?"), rest.size());
  if (!parse_host_port(rest.substr(0, auth_end), u, why)) return std::nullopt;
  rest = rest.substr(auth_end);
  const size_t q = std::min(rest.find('?'), rest.size());
  std::string_view path = rest.substr(0, q);
  if (path.empty()) path = "/";
  if (!parse_path(path, u, why)) return std::nullopt;
  if (q < rest.size()) {
    u.has_query = true;
    u.query = std::string(rest.substr(q + 1));
    for (char c : u.query)
      if (c == ' ' || is_control(static_cast<unsigned char>(c))) {
        refuse(why, "a space or control character in the query");
        return std::nullopt;
      }
  }
  return u;
}

std::string HttpUrl::origin() const { return fmt::format("{}://{}:{}", scheme, host, port); }

std::string HttpUrl::request_target() const {
  std::string out;
  for (const std::string& seg : segments) {
    out.push_back('/');
    for (char ch : seg) {
      const auto c = static_cast<unsigned char>(ch);
      if (is_plain_pchar(c)) out.push_back(ch);
      else out += fmt::format("%{:02X}", unsigned(c));
    }
  }
  if (has_query) out += "?" + query;
  return out;
}

bool url_under_prefix(const HttpUrl& url, const HttpUrl& prefix) {
  if (url.scheme != prefix.scheme || url.host != prefix.host || url.port != prefix.port) return false;
  if (prefix.has_query || prefix.segments.empty()) return false;
  const auto& p = prefix.segments;
  const auto& s = url.segments;
  // A prefix ending in '/' (its last segment empty) covers the segments below it; otherwise its
  // last segment must be one of the URL's whole segments.
  const size_t must_equal = p.back().empty() ? p.size() - 1 : p.size();
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < must_equal; ++i)
    if (s[i] != p[i]) return false;
  return true;
}

}  // namespace dpserve
