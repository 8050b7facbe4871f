// Python's str operations on UTF-8 text, by code point as Python counts them: strip, split, replace,
// case mapping, and the offsets of code points. Jinja2 templates call these through filters and methods.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

// Byte offset of each code point, then s.size().
std::vector<size_t> cp_offsets(const std::string& s);
// len(s): the number of code points, without building the offsets.
size_t cp_count(const std::string& s);
// str.isspace() for one code point.
bool py_space(uint32_t c);
// str.strip / lstrip / rstrip; `chars` null (or not a string): whitespace.
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right);
// str.split(sep, maxsplit); `sep` null, None or undefined: runs of whitespace. maxsplit < 0: no limit.
std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit);
// str.splitlines(): Python's line boundaries are \n \r \r\n \v \f \x1c-\x1e U+0085 U+2028 U+2029.
std::vector<std::string> py_splitlines(const std::string& s);
// str.replace(a, b, count); count < 0: all. A result past the output cap is an error.
std::string py_replace(const std::string& s, const std::string& a, const std::string& b, int64_t count);
enum CaseMode { kLower = 0, kUpper = 1, kCapitalize = 2, kTitle = 3, kJinjaTitle = 4 };
// str.lower / upper / capitalize / title, by Python's rules (full Unicode case mappings); and
// Jinja2's title filter, which is not str.title: each word (split after whitespace, '-', '(', '{',
// '[', '<') gets its first character upper-cased and the rest lower-cased.
std::string map_case(const std::string& s, int mode);
// markupsafe.escape: & < > " '.
std::string html_escape(const std::string& s);

}  // namespace dpserve::jinja
