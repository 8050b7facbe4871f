// GET /: the browser page (chat, server info, live metrics), embedded at build time.
#include <string>

#include "server/routes.h"
#include "server/webui_page.h"

namespace dpserve {

void register_webui_route(httplib::Server& svr, ServerContext&) {
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    // The page loads nothing from anywhere and talks only to this server: the policy says so, and
    // a page injected into it could not send what it reads elsewhere.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                   "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Cache-Control", "no-cache");
    const std::string_view page = webui_page();
    res.set_content(std::string(page), "text/html; charset=utf-8");
  });
}

}  // namespace dpserve
