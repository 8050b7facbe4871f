#include "tokenizer/jinja/value_ops.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "core/check.h"
#include "tokenizer/jinja/limits.h"
#include "tokenizer/jinja/methods.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/utf8.h"

namespace dpserve::jinja {

using T = Value::Type;

void error(int line, const std::string& msg) {
  if (line <= 0) fail("chat template: {}", msg);  // raised inside a global or method, which has no line
  fail("chat template line {}: {}", line, msg);
}

int64_t add_int(int64_t x, int64_t y, int line) {
  int64_t r;
  if (__builtin_add_overflow(x, y, &r)) error(line, "integer overflow");
  return r;
}
int64_t sub_int(int64_t x, int64_t y, int line) {
  int64_t r;
  if (__builtin_sub_overflow(x, y, &r)) error(line, "integer overflow");
  return r;
}
int64_t mul_int(int64_t x, int64_t y, int line) {
  int64_t r;
  if (__builtin_mul_overflow(x, y, &r)) error(line, "integer overflow");
  return r;
}

int64_t float_to_int(double d, int line) {
  if (!(d > -9.2233720368547758e18 && d < 9.2233720368547758e18)) error(line, "float too large for int()");
  return static_cast<int64_t>(d);
}

int64_t py_len(const Value& v, int line) {
  switch (v.type) {
    case T::kUndefined: return 0;
    case T::kString: return static_cast<int64_t>(cp_count(v.s));
    case T::kList:
      if (v.is_iterator) error(line, "object of type 'generator' has no len()");
      return static_cast<int64_t>(v.list->size());
    case T::kDict: return static_cast<int64_t>(v.dict->items.size());
    default: error(line, fmt::format("object of type '{}' has no len()", type_name(v)));
  }
}

List iterate(const Value& v, int line) {
  switch (v.type) {
    case T::kUndefined: return {};
    case T::kList: charge_items(static_cast<int64_t>(v.list->size()), line); return *v.list;
    case T::kDict: {
      charge_items(static_cast<int64_t>(v.dict->items.size()), line);
      List keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case T::kString: {
      // Counted before anything is built: a 64 MiB string would otherwise become 64 Mi values.
      charge_items(static_cast<int64_t>(cp_count(v.s)), line);
      List chars;
      auto off = cp_offsets(v.s);
      for (size_t k = 0; k + 1 < off.size(); ++k) chars.push_back(Value::string(v.s.substr(off[k], off[k + 1] - off[k])));
      return chars;
    }
    default: error(line, fmt::format("'{}' object is not iterable", type_name(v)));
  }
}

int compare_values(const Value& a, const Value& b, int line) {
  if (a.is_number() && b.is_number()) {
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.type == T::kList && b.type == T::kList) {
    for (size_t k = 0; k < std::min(a.list->size(), b.list->size()); ++k) {
      const int c = compare_values((*a.list)[k], (*b.list)[k], line);
      if (c) return c;
    }
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  error(line, fmt::format("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b)));
}

bool contains(const Value& container, const Value& item, int line) {
  switch (container.type) {
    case T::kUndefined: return false;
    case T::kString:
      if (!item.is_string()) error(line, fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
      return container.s.find(item.s) != std::string::npos;
    case T::kList:
      for (const auto& e : *container.list) {
        if (py_equal(e, item)) return true;
      }
      return false;
    case T::kDict:
      // Python hashes the key first: a list or dict is never a key, and asking is a TypeError.
      if ((item.type == T::kList && !item.is_tuple) || item.type == T::kDict) {
        error(line, fmt::format("unhashable type: '{}'", type_name(item)));
      }
      return item.is_string() && container.dict->find(item.s) != nullptr;
    default: error(line, fmt::format("argument of type '{}' is not iterable", type_name(container)));
  }
}

Value slice(const Value& v, const Value* start, const Value* stop, const Value* step, int line) {
  if (v.is_iterator) error(line, "'generator' object is not subscriptable");
  auto get = [&](const Value* p, int64_t dflt) {
    if (!p || p->is_none() || p->is_undefined()) return std::make_pair(false, dflt);
    if (p->type != T::kInt) error(line, "slice indices must be integers");
    return std::make_pair(true, p->i);
  };
  // A plain variable, not a structured binding: clang 14 cannot capture bindings in the lambda below.
  const int64_t st = get(step, 1).second;
  if (st == 0) error(line, "slice step cannot be zero");
  std::vector<size_t> off;
  int64_t n;
  if (v.is_string()) {
    off = cp_offsets(v.s);
    n = static_cast<int64_t>(off.size() - 1);
  } else if (v.type == T::kList) {
    n = static_cast<int64_t>(v.list->size());
  } else {
    error(line, fmt::format("'{}' object is not subscriptable", type_name(v)));
  }
  auto norm = [&](std::pair<bool, int64_t> p, int64_t dflt) {
    if (!p.first) return dflt;
    int64_t x = p.second;
    if (x < 0) x += n;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t b = norm(get(start, 0), st > 0 ? 0 : n - 1);
  const int64_t e = norm(get(stop, 0), st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t k = b; st > 0 ? k < e : k > e; k += st) idx.push_back(k);
  if (v.is_string()) {
    std::string out;
    for (int64_t k : idx) out.append(v.s, off[k], off[k + 1] - off[k]);
    return Value::string(out);
  }
  List out;
  for (int64_t k : idx) out.push_back((*v.list)[k]);
  Value r = Value::make_list(std::move(out));
  r.is_tuple = v.is_tuple;  // a tuple's slice is a tuple: it prints (a, b)
  return r;
}

const Value* kwarg(const KwArgs& kw, const char* name) {
  for (const auto& [k, v] : kw) {
    if (k == name) return &v;
  }
  return nullptr;
}

const Value* arg(const std::vector<Value>& args, const KwArgs& kw, size_t i, const char* name) {
  if (i < args.size()) return &args[i];
  return kwarg(kw, name);
}

Value pair_value(const std::string& k, const Value& v) {
  Value p = Value::make_list({Value::string(k), v});
  p.is_tuple = true;
  return p;
}

Value binary(const std::string& op, const Value& a, const Value& b, int line) {
  auto bounded = [&](std::string s) {  // memory stays bounded even when nothing is printed
    check_string_size(s.size(), line);
    return Value::string(std::move(s));
  };
  if (op == "~") return bounded(py_str(a) + py_str(b));
  if (a.is_undefined()) error(line, fmt::format("'{}' is undefined", a.s));
  if (b.is_undefined()) error(line, fmt::format("'{}' is undefined", b.s));
  auto bad = [&]() -> Value {
    error(line, fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b)));
  };
  const bool ints = (a.type == T::kInt || a.type == T::kBool) && (b.type == T::kInt || b.type == T::kBool);
  const int64_t x = a.type == T::kBool ? a.b : a.i, y = b.type == T::kBool ? b.b : b.i;
  if (op == "+") {
    if (a.is_string() && b.is_string()) return bounded(a.s + b.s);
    if (a.type == T::kList && b.type == T::kList) {
      // Python adds a list to a list and a tuple to a tuple only.
      auto kind = [](const Value& v) { return v.is_iterator ? "generator" : v.is_tuple ? "tuple" : "list"; };
      if (a.is_iterator || b.is_iterator) bad();
      if (a.is_tuple != b.is_tuple) {
        error(line, fmt::format("can only concatenate {} (not \"{}\") to {}", kind(a), kind(b), kind(a)));
      }
      // l = l + l doubles per step: capped like repetition, and counted against the render.
      const auto n = static_cast<int64_t>(a.list->size() + b.list->size());
      if (n > kMaxListItems) error(line, "list too large (more than 100000 items)");
      charge_items(n, line);
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      Value r = Value::make_list(std::move(l));
      r.is_tuple = a.is_tuple;
      return r;
    }
    if (ints) return Value::integer(add_int(x, y, line));
    if (a.is_number() && b.is_number()) return Value::number(a.as_double() + b.as_double());
    return bad();
  }
  if (op == "*") {
    // Python repeats a sequence by an int on either side: '=' * 3 and 3 * '=' alike.
    if ((a.type == T::kInt || a.type == T::kBool) && (b.is_string() || b.type == T::kList)) return binary(op, b, a, line);
    if ((a.is_string() || (a.type == T::kList && !a.is_iterator)) && (b.type == T::kInt || b.type == T::kBool)) {
      if (b.type == T::kBool) return binary(op, a, Value::integer(b.b), line);
      const auto len = static_cast<int64_t>(a.is_string() ? a.s.size() : a.list->size());
      // Lists hold ~100-byte values, so they get range()'s item cap rather than the byte cap.
      const int64_t cap = a.is_string() ? static_cast<int64_t>(render_caps.max_output) : kMaxListItems;
      if (b.i > 0 && len > 0 && b.i > cap / len) error(line, "repetition too large");
      if (a.is_string()) {
        if (b.i <= 0 || len == 0) return Value::string("");
        // Doubling: 'x' * 60000000 is ~26 appends, not 60 million.
        const auto total = static_cast<size_t>(b.i * len);
        std::string s = a.s;
        s.reserve(total);
        while (s.size() * 2 <= total) s += s;
        s.append(s, 0, total - s.size());
        return Value::string(std::move(s));
      }
      if (b.i > 0) charge_items(b.i * len, line);
      List l;
      // An empty list has no items to charge, so its count is unbounded: repeat nothing, not b.i times.
      for (int64_t k = 0; len > 0 && k < b.i; ++k) l.insert(l.end(), a.list->begin(), a.list->end());
      Value r = Value::make_list(std::move(l));
      r.is_tuple = a.is_tuple;
      return r;
    }
    if (ints) return Value::integer(mul_int(x, y, line));
    if (a.is_number() && b.is_number()) return Value::number(a.as_double() * b.as_double());
    return bad();
  }
  if (!a.is_number() || !b.is_number()) return bad();
  if (op == "-") return ints ? Value::integer(sub_int(x, y, line)) : Value::number(a.as_double() - b.as_double());
  if (op == "/") {
    if (b.as_double() == 0) error(line, "division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (b.as_double() == 0) error(line, "integer division or modulo by zero");
    if (ints) {
      if (x == INT64_MIN && y == -1) error(line, "integer overflow");  // the quotient is 2^63: SIGFPE
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;
      return Value::integer(op == "//" ? q : r);
    }
    const double q = std::floor(a.as_double() / b.as_double());
    return Value::number(op == "//" ? q : a.as_double() - q * b.as_double());
  }
  if (op == "**") {
    if (ints && y >= 0) {
      int64_t r = 1;
      for (int64_t k = 0; k < y && k < 64; ++k) r = mul_int(r, x, line);
      return Value::integer(r);
    }
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  return bad();
}

Value get_attr(const Value& obj, const std::string& name, int line) {
  switch (obj.type) {
    case T::kUndefined:
      error(line, obj.s.empty() ? "undefined value has no attribute '" + name + "'" : fmt::format("'{}' is undefined", obj.s));
    case T::kDict: {
      if (!obj.is_namespace) {
        Value m = dict_method(obj, name);
        if (!m.is_undefined()) return m;
      }
      if (const Value* v = obj.dict->find(name)) return *v;
      return Value::undefined(name);
    }
    case T::kString: return string_method(obj, name);
    default: return Value::undefined(name);
  }
}

Value get_item(const Value& obj, const Value& key, int line) {
  switch (obj.type) {
    case T::kUndefined: error(line, fmt::format("'{}' is undefined", obj.s));
    case T::kDict:
      if (key.is_string()) {
        if (const Value* v = obj.dict->find(key.s)) return *v;
        return obj.is_namespace ? Value::undefined(key.s) : dict_method(obj, key.s);
      }
      return Value::undefined();
    case T::kList:
      // Jinja2's getitem turns the TypeError into an undefined value.
      if (obj.is_iterator) return Value::undefined();
      [[fallthrough]];
    case T::kString: {
      if (key.type != T::kInt) {
        if (key.is_string() && obj.is_string()) return string_method(obj, key.s);
        return Value::undefined();
      }
      if (obj.type == T::kList) {
        int64_t k = key.i;
        const auto n = static_cast<int64_t>(obj.list->size());
        if (k < 0) k += n;
        if (k < 0 || k >= n) return Value::undefined();
        return (*obj.list)[k];
      }
      auto off = cp_offsets(obj.s);
      const auto n = static_cast<int64_t>(off.size() - 1);
      int64_t k = key.i;
      if (k < 0) k += n;
      if (k < 0 || k >= n) return Value::undefined();
      return Value::string(obj.s.substr(off[k], off[k + 1] - off[k]));
    }
    default: return Value::undefined();
  }
}

Value get_attr_path(const Value& x, const std::string& path, int line) {
  Value cur = x;
  size_t b = 0;
  for (;;) {
    const size_t dot = path.find('.', b);
    const std::string part = path.substr(b, dot == std::string::npos ? std::string::npos : dot - b);
    if (cur.is_undefined()) return cur;
    if (cur.type == T::kList && !part.empty() && std::isdigit(static_cast<unsigned char>(part[0]))) {
      cur = get_item(cur, Value::integer(std::strtoll(part.c_str(), nullptr, 10)), line);
    } else {
      cur = cur.type == T::kDict ? (cur.dict->find(part) ? *cur.dict->find(part) : Value::undefined(part))
                                 : get_attr(cur, part, line);
    }
    if (dot == std::string::npos) return cur;
    b = dot + 1;
  }
}

}  // namespace dpserve::jinja
