// Values of the chat-template interpreter, with Python semantics for printing (str / repr), JSON
// (json.dumps as transformers' tojson calls it), truthiness and equality, as Jinja2 inherits them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dpserve::jinja {

struct Value;
using List = std::vector<Value>;
using KwArgs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(std::vector<Value>& args, KwArgs& kwargs)>;

// Insertion-ordered like a Python dict.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool written = false;  // a namespace the interpreter has assigned an attribute to (it empties them at the end)
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(const std::string& key, Value v);
};

struct Value {
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };
  Type type = Type::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                   // string value, or the name of an undefined variable
  std::shared_ptr<List> list;      // lists are shared by reference, as in Python
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Function> fn;
  bool is_namespace = false;       // namespace() objects accept attribute assignment
  bool is_tuple = false;           // a list that prints as a Python tuple
  // A list standing for the generator Jinja2's select / map / unique / batch / items filters return
  // (and reverse's iterator): always true, even when empty, with no len() and no subscript; "| list" makes
  // it a list. Templates test "if xs | selectattr(...)" and get true in Jinja2 whatever the items.
  bool is_iterator = false;

  static Value undefined(std::string name = "") { Value v; v.s = std::move(name); return v; }
  static Value none() { Value v; v.type = Type::kNone; return v; }
  static Value boolean(bool x) { Value v; v.type = Type::kBool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.type = Type::kInt; v.i = x; return v; }
  static Value number(double x) { Value v; v.type = Type::kFloat; v.f = x; return v; }
  static Value string(std::string x) { Value v; v.type = Type::kString; v.s = std::move(x); return v; }
  static Value make_list(List l = {}) { Value v; v.type = Type::kList; v.list = std::make_shared<List>(std::move(l)); return v; }
  static Value make_dict() { Value v; v.type = Type::kDict; v.dict = std::make_shared<Dict>(); return v; }
  static Value function(Function f) { Value v; v.type = Type::kFunction; v.fn = std::make_shared<Function>(std::move(f)); return v; }

  bool is_undefined() const { return type == Type::kUndefined; }
  bool is_none() const { return type == Type::kNone; }
  bool is_string() const { return type == Type::kString; }
  bool is_number() const { return type == Type::kInt || type == Type::kFloat || type == Type::kBool; }
  double as_double() const { return type == Type::kFloat ? f : type == Type::kBool ? (b ? 1 : 0) : static_cast<double>(i); }
  bool truthy() const;
};

const char* type_name(const Value& v);
std::string py_str(const Value& v);   // str(v); undefined prints as ""
std::string py_repr(const Value& v);  // repr(v)
bool py_equal(const Value& a, const Value& b);
// json.dumps(v, ensure_ascii=False, indent=indent, separators=...) (indent < 0: none).
std::string to_json(const Value& v, int indent, bool ensure_ascii = false, bool sort_keys = false,
                    const std::string& item_sep = "", const std::string& key_sep = ": ");

Value from_json(const nlohmann::ordered_json& j);
Value from_json(const nlohmann::json& j);

}  // namespace dpserve::jinja
