#include "server/image_source.h"

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <future>

#include <fmt/format.h>
#include <httplib.h>

#include "core/check.h"
#include "server/base64.h"
#include "server/image_url.h"
#include "server/openai_error.h"

namespace dpserve {

namespace {

// URL schemes and media types are case-insensitive (RFC 3986, RFC 2045); `p` is lower-case.
bool starts_with_nocase(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < p.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != p[i]) return false;
  return true;
}
bool equals_nocase(std::string_view s, std::string_view p) { return s.size() == p.size() && starts_with_nocase(s, p); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string fetch(const std::string& url, const ImageOptions& opts, const std::string& param) {
  std::string why;
  const std::optional<HttpUrl> u = parse_http_url(url, &why);
  if (!u) bad_param(param, fmt::format("image URL is not a valid http(s) URL: {}", why));
  // Compared component by component after normalisation ("/img/../secret" is "/secret"), and the
  // normalised form is what is fetched: the host sees exactly the path that was allowed.
  bool allowed = false;
  for (const auto& p : opts.allowed_url_prefixes)
    if (const auto pu = parse_http_url(p)) allowed = allowed || url_under_prefix(*u, *pu);
  if (!allowed)
    bad_param(param, opts.allowed_url_prefixes.empty()
                         ? std::string("remote image URLs are not allowed on this server (send the image as a "
                                       "data: URL, or start the server with --allowed-image-url-prefix)")
                         // The prefixes are not named: they can name hosts a client should not learn of.
                         : std::string("image URL is not under an allowed prefix (--allowed-image-url-prefix; "
                                       "compared after resolving '.', '..' and %-escapes)"));
  const std::string origin = u->origin(), path = u->request_target();
  httplib::Client cli(origin);
  const auto timeout = std::chrono::milliseconds(int64_t(opts.fetch_timeout_s * 1000));
  cli.set_connection_timeout(timeout);
  cli.set_read_timeout(timeout);
  cli.set_write_timeout(timeout);
  // A redirect could lead outside the allowed prefixes: it is an error, not followed.
  cli.set_follow_location(false);
  cli.set_url_encode(false);  // request_target() is encoded already
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string body;
  std::atomic<bool> too_big = false, too_slow = false;
  // The socket timeouts apply to each read, so a host sending its headers a byte at a time would
  // never trip them: the whole fetch runs beside a watch that stops the client at the deadline.
  auto fetching = std::async(std::launch::async, [&] {
    return cli.Get(path, [&](const char* data, size_t n) {
      if (body.size() + n > opts.max_bytes) return !(too_big = true);
      if (std::chrono::steady_clock::now() > deadline) return !(too_slow = true);
      body.append(data, n);
      return true;
    });
  });
  if (fetching.wait_until(deadline) == std::future_status::timeout) {
    too_slow = true;
    // Stopping shuts the socket down; repeated in case the request had not opened it yet.
    do cli.stop();
    while (fetching.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  }
  auto res = fetching.get();
  if (too_big) bad_param(param, fmt::format("image at {} is larger than {} bytes (--max-image-bytes)", url, opts.max_bytes));
  if (too_slow) bad_param(param, fmt::format("fetching the image at {} took longer than {} s", url, opts.fetch_timeout_s));
  if (!res) bad_param(param, fmt::format("could not fetch the image at {}: {}", url, httplib::to_string(res.error())));
  if (res->status != 200) bad_param(param, fmt::format("fetching the image at {} gave HTTP {}", url, res->status));
  return body;
}

}  // namespace

void check_image_url_prefix(const std::string& prefix) {
  std::string why;
  const std::optional<HttpUrl> u = parse_http_url(prefix, &why);
  const size_t sep = prefix.find("://");
  const bool has_path = sep != std::string::npos && prefix.find('/', sep + 3) != std::string::npos;
  if (!u || !has_path || u->has_query)
    fail("--allowed-image-url-prefix {}: must be an http(s) URL with a host and a path starting with '/', e.g. "
         "https://images.example.com/ (a bare host would also match other hosts that start with its name){}{}",
         prefix, u && u->has_query ? "; it must not have a query" : "", u ? "" : "; " + why);
}

std::string image_bytes(const std::string& ref, bool allow_raw_base64, const ImageOptions& opts,
                        const std::string& param) {
  std::string_view payload;
  if (starts_with_nocase(ref, "data:")) {
    const size_t comma = ref.find(',');
    if (comma == std::string::npos) bad_param(param, "image data: URL has no ',' before its data");
    // data:[<media type>][;<parameter>=<value>]*;base64,<data> (RFC 2397)
    std::string_view meta = std::string_view(ref).substr(5, comma - 5);
    const size_t last = meta.rfind(';');
    if (last == std::string_view::npos || !equals_nocase(trim(meta.substr(last + 1)), "base64"))
      bad_param(param, "image data: URL must be base64 (data:image/png;base64,...)");
    const std::string_view type = trim(meta.substr(0, std::min(meta.find(';'), last)));
    if (!equals_nocase(type, "image/png") && !equals_nocase(type, "image/jpeg") && !equals_nocase(type, "image/jpg"))
      bad_param(param, fmt::format("image data: URL type '{}' is not supported (image/png or image/jpeg)",
                                   std::string(type.substr(0, 40))));
    payload = std::string_view(ref).substr(comma + 1);
  } else if (starts_with_nocase(ref, "http://") || starts_with_nocase(ref, "https://")) {
    return fetch(ref, opts, param);
  } else if (allow_raw_base64) {
    payload = ref;
  } else {
    bad_param(param, "image URL must be a data: URL (data:image/png;base64,...) or an http(s) URL");
  }
  // The size bound is on the decoded bytes: line breaks and spaces (which MIME base64 has every 76
  // characters) do not count, and this is checked before anything is allocated.
  size_t digits = 0;
  for (char c : payload) digits += !(c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '=');
  if (digits / 4 * 3 + (digits % 4 ? digits % 4 - 1 : 0) > opts.max_bytes)
    bad_param(param, fmt::format("image is larger than {} bytes (--max-image-bytes)", opts.max_bytes));
  std::string out;
  if (!base64_decode(payload, out)) bad_param(param, "image data is not valid base64");
  if (out.size() > opts.max_bytes)
    bad_param(param, fmt::format("image is larger than {} bytes (--max-image-bytes)", opts.max_bytes));
  return out;
}

}  // namespace dpserve
