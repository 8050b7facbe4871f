// Python semantics of Jinja2 operations on values: arithmetic (with overflow as an error, where
// Python's ints would grow), comparison, membership, len, iteration, slicing, attribute and item
// access (which reach str and dict methods, see methods.h), and argument lookup for callables.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace dpserve::jinja {

// Throws dpserve::Error "chat template line N: msg".
[[noreturn]] void error(int line, const std::string& msg);

// int64 arithmetic; overflow is an error instead of undefined behaviour.
int64_t add_int(int64_t x, int64_t y, int line);
int64_t sub_int(int64_t x, int64_t y, int line);
int64_t mul_int(int64_t x, int64_t y, int line);
// float -> int as Python's int() truncates; values outside int64 are an error.
int64_t float_to_int(double d, int line);

int64_t py_len(const Value& v, int line);
// Items of an iterable (dict -> keys, string -> code points, undefined -> none).
List iterate(const Value& v, int line);
// <0, 0, >0 as Python orders numbers, strings and lists; other pairs are an error.
int compare_values(const Value& a, const Value& b, int line);
// `item in container`.
bool contains(const Value& container, const Value& item, int line);
// v[start:stop:step]; null pointers are omitted parts.
Value slice(const Value& v, const Value* start, const Value* stop, const Value* step, int line);
// a <op> b for + - * / // % ** ~.
Value binary(const std::string& op, const Value& a, const Value& b, int line);

// obj.name (dict keys and methods, str methods) and obj[key].
Value get_attr(const Value& obj, const std::string& name, int line);
Value get_item(const Value& obj, const Value& key, int line);
// "a.b.0": Jinja2's dotted attribute paths (filters' attribute= arguments).
Value get_attr_path(const Value& x, const std::string& path, int line);

// Keyword argument `name`, or null.
const Value* kwarg(const KwArgs& kw, const char* name);
// Positional argument i, else keyword `name`, else null.
const Value* arg(const std::vector<Value>& args, const KwArgs& kw, size_t i, const char* name);
// (k, v) as a tuple, as dict.items() yields.
Value pair_value(const std::string& k, const Value& v);

}  // namespace dpserve::jinja
