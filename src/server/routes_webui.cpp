// GET /: the browser page (chat, server info, live metrics), embedded at build time.
#include <string>
#include <string_view>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "core/check.h"
#include "server/routes.h"
#include "server/webui_page.h"

namespace dpserve {

namespace {

// The page's one inline script as a CSP source ('sha256-<base64 of its digest>'): the browser runs
// that script and no other, so text that ever got into the page as markup could not run as code.
std::string script_hash_source(std::string_view page) {
  const size_t open = page.find("<script>");
  const size_t close = page.find("</script>", open);
  DP_CHECK(open != std::string_view::npos && close != std::string_view::npos, "the web page has no <script> block");
  DP_CHECK(page.find("<script", close) == std::string_view::npos, "the web page has more than one <script> block");
  const std::string_view body = page.substr(open + 8, close - open - 8);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
  unsigned char b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  EVP_EncodeBlock(b64, digest, SHA256_DIGEST_LENGTH);
  return "'sha256-" + std::string(reinterpret_cast<const char*>(b64)) + "'";
}

}  // namespace

void register_webui_route(httplib::Server& svr, ServerContext&) {
  // The page loads nothing from anywhere and talks only to this server: the policy says so, and
  // a page injected into it could not send what it reads elsewhere. Inline styles stay allowed (the
  // markup has style attributes; styles run no code).
  const std::string csp = "default-src 'none'; script-src " + script_hash_source(webui_page()) +
                          "; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                          "form-action 'none'; frame-ancestors 'none'";
  svr.Get("/", [csp](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", csp);
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Cache-Control", "no-cache");
    const std::string_view page = webui_page();
    res.set_content(std::string(page), "text/html; charset=utf-8");
  });
}

}  // namespace dpserve
