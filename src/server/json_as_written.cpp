#include "server/json_as_written.h"

namespace dpserve {

std::string_view member_text(std::string_view obj, std::string_view key) {
  size_t i = obj.find('{') + 1;
  auto skip_ws = [&] {
    while (i < obj.size() && (obj[i] == ' ' || obj[i] == '\t' || obj[i] == '\n' || obj[i] == '\r')) ++i;
  };
  auto string_end = [&](size_t at) {  // at: the opening quote; returns one past the closing quote
    for (size_t k = at + 1; k < obj.size(); ++k) {
      if (obj[k] == '\\') ++k;
      else if (obj[k] == '"') return k + 1;
    }
    return obj.size();
  };
  while (i < obj.size()) {
    skip_ws();
    if (i >= obj.size() || obj[i] != '"') return {};
    const size_t key_end = string_end(i);
    const std::string_view k = obj.substr(i + 1, key_end - i - 2);
    i = key_end;
    skip_ws();
    ++i;  // ':'
    skip_ws();
    const size_t start = i;
    int depth = 0;
    for (; i < obj.size(); ++i) {
      const char c = obj[i];
      if (c == '"') {
        i = string_end(i) - 1;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        --depth;
      } else if (c == ',' && depth == 0) {
        break;
      }
    }
    size_t end = i;
    while (end > start && (obj[end - 1] == ' ' || obj[end - 1] == '\t' || obj[end - 1] == '\n' || obj[end - 1] == '\r'))
      --end;
    // Keys hold no escapes in the calls we read ("name", "arguments", "parameters").
    if (k == key) return obj.substr(start, end - start);
    if (i < obj.size() && obj[i] == ',') ++i;
    else break;
  }
  return {};
}

std::string compact_json(std::string_view t) {
  std::string out;
  bool in_string = false;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < t.size()) out += t[++i];
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
      out += c;
    } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      out += c;
    }
  }
  return out;
}

}  // namespace dpserve
