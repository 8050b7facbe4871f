// multipart/form-data bodies (RFC 7578), as OpenAI clients upload files: the parts between the
// boundary lines, each with its field name, file name and content type from its headers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dpserve {

struct FormPart {
  std::string name;
  std::string filename;  // "" for a plain field
  std::string content_type;
  std::string_view body;  // into the request body
};

// The parts of `body` sent with this Content-Type; a 400 (ApiError) when the type has no boundary or
// the body is not framed by it.
std::vector<FormPart> parse_multipart(std::string_view content_type, std::string_view body);

}  // namespace dpserve
