#include "tokenizer/jinja/tests.h"

#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/value_ops.h"

namespace dpserve::jinja {

namespace {

using T = Value::Type;
using Args = std::vector<Value>;
// Gets the name it was called by, so aliases share one function.
using TestFn = bool (*)(const std::string& name, const Value& v, const Args& a, int line);

void need(const std::string& name, const Args& a, size_t n, int line) {
  if (a.size() < n) error(line, fmt::format("test '{}' needs an argument", name));
}

bool odd_even(const std::string& name, const Value& v, const Args&, int line) {
  if (v.type != T::kInt) error(line, fmt::format("test '{}' needs an integer", name));
  return (((v.i % 2) + 2) % 2 == 1) == (name == "odd");
}

bool divisibleby(const std::string& name, const Value& v, const Args& a, int line) {
  need(name, a, 1, line);
  if (v.type != T::kInt || a[0].type != T::kInt || a[0].i == 0) error(line, "divisibleby needs non-zero integers");
  return a[0].i == -1 || v.i % a[0].i == 0;  // INT64_MIN % -1 traps
}

bool equal(const std::string& name, const Value& v, const Args& a, int line) {
  need(name, a, 1, line);
  return py_equal(v, a[0]) && (name != "sameas" || v.type == a[0].type);
}

bool not_equal(const std::string& name, const Value& v, const Args& a, int line) {
  need(name, a, 1, line);
  return !py_equal(v, a[0]);
}

bool ordered(const std::string& name, const Value& v, const Args& a, int line) {
  need(name, a, 1, line);
  const int c = compare_values(v, a[0], line);
  return name == "lt" ? c < 0 : name == "gt" ? c > 0 : name == "le" ? c <= 0 : c >= 0;
}

bool in(const std::string& name, const Value& v, const Args& a, int line) {
  need(name, a, 1, line);
  return contains(a[0], v, line);
}

// str.islower / isupper: every cased character in that case, and at least one cased character ('123' is
// neither). A string with a cased character is one that lower() and upper() map differently.
bool cased(const std::string& name, const Value& v, const Args&, int) {
  if (!v.is_string()) return false;
  const std::string lo = map_case(v.s, kLower), up = map_case(v.s, kUpper);
  return lo != up && (name == "lower" ? lo : up) == v.s;
}

#define DPSERVE_TYPE_TEST(expr) [](const std::string&, const Value& v, const Args&, int) -> bool { return expr; }

const std::unordered_map<std::string_view, TestFn>& test_table() {
  static const std::unordered_map<std::string_view, TestFn> t = {
      {"defined", DPSERVE_TYPE_TEST(!v.is_undefined())},
      {"undefined", DPSERVE_TYPE_TEST(v.is_undefined())},
      {"none", DPSERVE_TYPE_TEST(v.is_none())},
      {"string", DPSERVE_TYPE_TEST(v.is_string())},
      {"number", DPSERVE_TYPE_TEST(v.is_number())},
      {"integer", DPSERVE_TYPE_TEST(v.type == T::kInt)},
      {"float", DPSERVE_TYPE_TEST(v.type == T::kFloat)},
      {"boolean", DPSERVE_TYPE_TEST(v.type == T::kBool)},
      {"true", DPSERVE_TYPE_TEST(v.type == T::kBool && v.b)},
      {"false", DPSERVE_TYPE_TEST(v.type == T::kBool && !v.b)},
      {"mapping", DPSERVE_TYPE_TEST(v.type == T::kDict)},
      {"iterable", DPSERVE_TYPE_TEST(v.type == T::kList || v.type == T::kDict || v.is_string() || v.is_undefined())},
      {"sequence", DPSERVE_TYPE_TEST((v.type == T::kList && !v.is_iterator) || v.type == T::kDict || v.is_string())},
      {"callable", DPSERVE_TYPE_TEST(v.type == T::kFunction)},
      {"odd", odd_even},
      {"even", odd_even},
      {"divisibleby", divisibleby},
      {"eq", equal},
      {"equalto", equal},
      {"==", equal},
      {"sameas", equal},
      {"ne", not_equal},
      {"lt", ordered},
      {"gt", ordered},
      {"le", ordered},
      {"ge", ordered},
      {"in", in},
      {"lower", cased},
      {"upper", cased},
  };
  return t;
}

#undef DPSERVE_TYPE_TEST

}  // namespace

bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, int line) {
  const auto& t = test_table();
  auto it = t.find(name);
  if (it == t.end()) error(line, fmt::format("unknown test '{}'", name));
  return it->second(name, v, args, line);
}

}  // namespace dpserve::jinja
