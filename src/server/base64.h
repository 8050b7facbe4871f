// Standard base64 (RFC 4648: alphabet A-Z a-z 0-9 + /, '=' padding): embeddings' base64 vectors,
// images in data: URLs.
#pragma once

#include <string>
#include <string_view>

namespace dpserve {

std::string base64_encode(std::string_view bytes);
// '=' padding optional, ASCII whitespace skipped; false for anything else that is not base64.
bool base64_decode(std::string_view in, std::string& out);

}  // namespace dpserve
