#include "server/multipart.h"

#include <algorithm>
#include <cctype>

#include "server/openai_error.h"

namespace dpserve {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

[[noreturn]] void malformed(const std::string& why) {
  throw ApiError(400, "The multipart/form-data body is malformed: " + why, "", "invalid_request_error",
                 "invalid_multipart");
}

// A header parameter's value (`name="x"` or `name=x`) from "form-data; name=...; filename=...":
// the header is split at the ';' outside quotes, and a quoted value unescaped.
std::string param(std::string_view header, std::string_view key) {
  size_t i = 0;
  while (i < header.size()) {
    // One item: up to the next ';' outside quotes.
    std::string item_key, value;
    bool in_key = true, quoted = false, was_quoted = false;
    for (; i < header.size(); ++i) {
      const char c = header[i];
      if (quoted) {
        if (c == '\\' && i + 1 < header.size()) {
          value += header[++i];
        } else if (c == '"') {
          quoted = false;
        } else {
          value += c;
        }
      } else if (c == ';') {
        ++i;
        break;
      } else if (in_key && c == '=') {
        in_key = false;
      } else if (in_key) {
        item_key += c;
      } else if (c == '"' && !was_quoted) {
        quoted = was_quoted = true;
      } else if (!was_quoted) {
        value += c;
      }
    }
    if (quoted) malformed("an unterminated quoted parameter");
    if (!in_key && lower(trim(item_key)) == key) return was_quoted ? value : std::string(trim(value));
  }
  return "";
}

}  // namespace

std::vector<FormPart> parse_multipart(std::string_view content_type, std::string_view body) {
  if (lower(trim(content_type.substr(0, content_type.find(';')))) != "multipart/form-data")
    throw ApiError(400, "The body must be multipart/form-data (a file upload)", "", "invalid_request_error",
                   "invalid_multipart");
  const std::string boundary = param(content_type, "boundary");
  if (boundary.empty() || boundary.size() > 200) malformed("no boundary in its Content-Type");
  const std::string delim = "--" + boundary;
  std::vector<FormPart> parts;
  size_t at = body.find(delim);
  if (at == std::string_view::npos) malformed("no boundary line");
  for (;;) {
    at += delim.size();
    if (body.substr(at, 2) == "--") return parts;  // the closing boundary
    if (body.substr(at, 2) != "\r\n") malformed("a boundary line not ended by CRLF");
    at += 2;
    const size_t head_end = body.find("\r\n\r\n", at);
    if (head_end == std::string_view::npos) malformed("a part without the blank line after its headers");
    FormPart p;
    std::string_view headers = body.substr(at, head_end - at);
    while (!headers.empty()) {
      const size_t eol = headers.find("\r\n");
      std::string_view line = headers.substr(0, eol);
      headers = eol == std::string_view::npos ? std::string_view() : headers.substr(eol + 2);
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) malformed("a part header without ':'");
      const std::string key = lower(trim(line.substr(0, colon)));
      const std::string_view value = trim(line.substr(colon + 1));
      if (key == "content-disposition") {
        p.name = param(value, "name");
        p.filename = param(value, "filename");
      } else if (key == "content-type") {
        p.content_type = std::string(value);
      }
    }
    const size_t start = head_end + 4;
    const size_t next = body.find("\r\n" + delim, start);
    if (next == std::string_view::npos) malformed("a part not ended by the boundary");
    p.body = body.substr(start, next - start);
    if (p.name.empty()) malformed("a part without a name");
    parts.push_back(std::move(p));
    at = next + 2;
  }
}

}  // namespace dpserve
