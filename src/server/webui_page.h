// The web page served at / (src/server/webui/index.html), embedded in the binary at build time.
#pragma once

#include <string_view>

namespace dpserve {

// The page's HTML, with its CSS and JS inline.
std::string_view webui_page();

}  // namespace dpserve
