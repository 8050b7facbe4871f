#include "server/image_source.h"

#include <chrono>

#include <fmt/format.h>
#include <httplib.h>

#include "core/check.h"
#include "server/image_url.h"
#include "server/openai_error.h"

namespace dpserve {

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

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
                         : fmt::format("image URL is not under an allowed prefix (--allowed-image-url-prefix: {}; "
                                       "compared after resolving '.', '..' and %-escapes)",
                                       fmt::join(opts.allowed_url_prefixes, ", ")));
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
  bool too_big = false, too_slow = false;
  auto res = cli.Get(path, [&](const char* data, size_t n) {
    if (body.size() + n > opts.max_bytes) return !(too_big = true);
    if (std::chrono::steady_clock::now() > deadline) return !(too_slow = true);
    body.append(data, n);
    return true;
  });
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

bool base64_decode(std::string_view in, std::string& out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out.clear();
  out.reserve(in.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    const int v = value(c);
    if (v < 0 || pad > 0) return false;  // a foreign character, or data after the padding
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  // 6 leftover bits (one character of a group) cannot be; more than two '=' neither.
  return bits < 6 && pad <= 2;
}

std::string image_bytes(const std::string& ref, bool allow_raw_base64, const ImageOptions& opts,
                        const std::string& param) {
  std::string_view payload;
  if (starts_with(ref, "data:")) {
    const size_t comma = ref.find(',');
    if (comma == std::string::npos) bad_param(param, "image data: URL has no ',' before its data");
    const std::string_view meta = std::string_view(ref).substr(5, comma - 5);
    if (meta.size() < 7 || meta.substr(meta.size() - 7) != ";base64")
      bad_param(param, "image data: URL must be base64 (data:image/png;base64,...)");
    const std::string_view type = meta.substr(0, meta.size() - 7);
    if (type != "image/png" && type != "image/jpeg" && type != "image/jpg")
      bad_param(param, fmt::format("image data: URL type '{}' is not supported (image/png or image/jpeg)",
                                   std::string(type.substr(0, 40))));
    payload = std::string_view(ref).substr(comma + 1);
  } else if (starts_with(ref, "http://") || starts_with(ref, "https://")) {
    return fetch(ref, opts, param);
  } else if (allow_raw_base64) {
    payload = ref;
  } else {
    bad_param(param, "image URL must be a data: URL (data:image/png;base64,...) or an http(s) URL");
  }
  if (payload.size() / 4 * 3 > opts.max_bytes + 3)
    bad_param(param, fmt::format("image is larger than {} bytes (--max-image-bytes)", opts.max_bytes));
  std::string out;
  if (!base64_decode(payload, out)) bad_param(param, "image data is not valid base64");
  if (out.size() > opts.max_bytes)
    bad_param(param, fmt::format("image is larger than {} bytes (--max-image-bytes)", opts.max_bytes));
  return out;
}

}  // namespace dpserve
