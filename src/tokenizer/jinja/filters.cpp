#include "tokenizer/jinja/filters.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "tokenizer/jinja/limits.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/tests.h"
#include "tokenizer/jinja/value_ops.h"

namespace dpserve::jinja {

namespace {

using T = Value::Type;
using Args = std::vector<Value>;
// Gets the name it was called by, so aliases and families (select / reject ...) share one function.
using FilterFn = Value (*)(const std::string& name, const Value& v, Args& a, KwArgs& kw, int line);

std::string str_of(const Value& x) { return x.is_string() ? x.s : py_str(x); }

Value trim(const std::string&, const Value& v, Args& a, KwArgs& kw, int) {
  return Value::string(py_strip(str_of(v), arg(a, kw, 0, "chars"), true, true));
}

Value length(const std::string&, const Value& v, Args&, KwArgs&, int line) { return Value::integer(py_len(v, line)); }

Value string(const std::string&, const Value& v, Args&, KwArgs&, int) { return Value::string(py_str(v)); }

Value safe(const std::string&, const Value& v, Args&, KwArgs&, int) { return v; }

Value escape(const std::string&, const Value& v, Args&, KwArgs&, int) { return Value::string(html_escape(str_of(v))); }

Value change_case(const std::string& name, const Value& v, Args&, KwArgs&, int) {
  const int mode = name == "lower"        ? kLower
                   : name == "upper"      ? kUpper
                   : name == "capitalize" ? kCapitalize
                                          : kJinjaTitle;
  return Value::string(map_case(str_of(v), mode));
}

Value tojson(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* indent = arg(a, kw, 0, "indent");
  const Value* ensure = kwarg(kw, "ensure_ascii");
  const Value* sort = kwarg(kw, "sort_keys");
  const Value* seps = kwarg(kw, "separators");
  std::string item_sep, key_sep = ": ";
  if (seps && seps->type == T::kList && seps->list->size() == 2) {
    item_sep = py_str((*seps->list)[0]);
    key_sep = py_str((*seps->list)[1]);
  }
  if (indent && indent->type == T::kInt && indent->i > 1000) error(line, "tojson indent must be at most 1000");
  const int ind = indent && indent->type == T::kInt ? static_cast<int>(indent->i) : -1;
  return Value::string(to_json(v, ind, ensure && ensure->truthy(), sort && sort->truthy(), item_sep, key_sep));
}

Value default_value(const std::string&, const Value& v, Args& a, KwArgs& kw, int) {
  const Value* dflt = arg(a, kw, 0, "default_value");
  const Value* boolean = arg(a, kw, 1, "boolean");
  const bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
  return use ? (dflt ? *dflt : Value::string("")) : v;
}

Value join(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* sep = arg(a, kw, 0, "d");
  const Value* attr = arg(a, kw, 1, "attribute");
  std::string out;
  bool first = true;
  for (const auto& x : iterate(v, line)) {
    if (!first) out += sep ? py_str(*sep) : "";
    out += py_str(attr ? get_attr(x, py_str(*attr), line) : x);
    check_string_size(out.size(), line);
    first = false;
  }
  return Value::string(out);
}

Value first_last(const std::string& name, const Value& v, Args&, KwArgs&, int line) {
  List items = iterate(v, line);
  if (items.empty()) return Value::undefined();
  return name == "first" ? items.front() : items.back();
}

Value list(const std::string&, const Value& v, Args&, KwArgs&, int line) { return Value::make_list(iterate(v, line)); }

Value items(const std::string&, const Value& v, Args&, KwArgs&, int line) {
  if (v.is_undefined()) return Value::make_list();
  if (v.type != T::kDict) error(line, "items filter needs a mapping");
  List l;
  for (const auto& kv : v.dict->items) l.push_back(pair_value(kv.first, kv.second));
  return Value::make_list(std::move(l));
}

Value reverse(const std::string&, const Value& v, Args&, KwArgs&, int line) {
  if (v.is_string()) {
    auto off = cp_offsets(v.s);
    std::string out;
    for (size_t k = off.size() - 1; k > 0; --k) out.append(v.s, off[k - 1], off[k] - off[k - 1]);
    return Value::string(out);
  }
  List l = iterate(v, line);
  std::reverse(l.begin(), l.end());
  return Value::make_list(std::move(l));
}

// select / reject / selectattr / rejectattr: keep the items whose test (or truthiness) passes or fails.
Value select(const std::string& name, const Value& v, Args& a, KwArgs&, int line) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep_true = name == "selectattr" || name == "select";
  size_t k = 0;
  std::string attr;
  if (by_attr) {
    if (a.empty()) error(line, fmt::format("{} needs an attribute name", name));
    attr = py_str(a[k++]);
  }
  std::string test = k < a.size() ? py_str(a[k++]) : "";
  std::vector<Value> targs(a.begin() + std::min(k, a.size()), a.end());
  List out;
  for (const auto& x : iterate(v, line)) {
    Value subject = by_attr ? get_attr_path(x, attr, line) : x;
    const bool r = test.empty() ? subject.truthy() : apply_test(test, subject, targs, line);
    if (r == keep_true) out.push_back(x);
  }
  return Value::make_list(std::move(out));
}

Value map(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  List out;
  if (const Value* attr = kwarg(kw, "attribute")) {
    const Value* dflt = kwarg(kw, "default");
    for (const auto& x : iterate(v, line)) {
      Value r = get_attr_path(x, py_str(*attr), line);
      out.push_back(r.is_undefined() && dflt ? *dflt : r);
    }
    return Value::make_list(std::move(out));
  }
  if (a.empty()) error(line, "map needs a filter name or attribute=");
  const std::string f = py_str(a[0]);
  std::vector<Value> fargs(a.begin() + 1, a.end());
  KwArgs none;
  for (const auto& x : iterate(v, line)) out.push_back(apply_filter(f, x, fargs, none, line));
  return Value::make_list(std::move(out));
}

Value to_int(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  if (v.type == T::kInt) return v;
  if (v.type == T::kBool) return Value::integer(v.b);
  if (v.type == T::kFloat) return Value::integer(float_to_int(v.f, line));
  if (v.is_string()) {
    char* end = nullptr;
    const std::string t = py_strip(v.s, nullptr, true, true);
    const long long x = std::strtoll(t.c_str(), &end, 10);
    if (!t.empty() && end && *end == '\0') return Value::integer(x);
    const double d = std::strtod(t.c_str(), &end);
    if (!t.empty() && end && *end == '\0') return Value::integer(float_to_int(d, line));
  }
  const Value* dflt = arg(a, kw, 0, "default");
  return dflt ? *dflt : Value::integer(0);
}

Value to_float(const std::string&, const Value& v, Args& a, KwArgs& kw, int) {
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    char* end = nullptr;
    const double d = std::strtod(v.s.c_str(), &end);
    if (!v.s.empty() && end && *end == '\0') return Value::number(d);
  }
  const Value* dflt = arg(a, kw, 0, "default");
  return dflt ? *dflt : Value::number(0);
}

Value abs_value(const std::string&, const Value& v, Args&, KwArgs&, int line) {
  if (v.type == T::kInt) return Value::integer(v.i < 0 ? sub_int(0, v.i, line) : v.i);
  if (v.type == T::kFloat) return Value::number(std::fabs(v.f));
  error(line, "abs needs a number");
}

// Jinja2's round(precision=0, method='common'): 'common' is Python's round, halves to even
// (2.5 -> 2.0; nearbyint in the default rounding mode), 'ceil' and 'floor' round up and down.
Value round_value(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* prec = arg(a, kw, 0, "precision");
  const Value* method = arg(a, kw, 1, "method");
  const double p = std::pow(10.0, prec && prec->type == T::kInt ? static_cast<double>(prec->i) : 0.0);
  if (!v.is_number()) error(line, "round needs a number");
  const std::string how = method && method->is_string() ? method->s : "common";
  const double x = v.as_double() * p;
  if (how == "common") return Value::number(std::nearbyint(x) / p);
  if (how == "ceil") return Value::number(std::ceil(x) / p);
  if (how == "floor") return Value::number(std::floor(x) / p);
  error(line, "round's method must be common, ceil or floor");
}

Value replace(const std::string&, const Value& v, Args& a, KwArgs&, int line) {
  if (a.size() < 2) error(line, "replace needs two arguments");
  return Value::string(
      py_replace(str_of(v), py_str(a[0]), py_str(a[1]), a.size() > 2 && a[2].type == T::kInt ? a[2].i : -1));
}

Value indent(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* w = arg(a, kw, 0, "width");
  const Value* first = arg(a, kw, 1, "first");
  const Value* blank = arg(a, kw, 2, "blank");
  if (w && w->type == T::kInt && (w->i < 0 || w->i > 1000)) error(line, "indent width must be 0 to 1000");
  const std::string pad = w && w->is_string() ? w->s : std::string(w && w->type == T::kInt ? w->i : 4, ' ');
  const std::string s = str_of(v);
  std::string out;
  size_t b = 0;
  bool first_line = true;
  for (;;) {
    const size_t nl = s.find('\n', b);
    const std::string ln = s.substr(b, nl == std::string::npos ? std::string::npos : nl - b);
    const bool add = first_line ? (first && first->truthy()) : (!ln.empty() || (blank && blank->truthy()));
    if (add) out += pad;
    out += ln;
    check_string_size(out.size(), line);
    if (nl == std::string::npos) break;
    out += '\n';
    b = nl + 1;
    first_line = false;
  }
  return Value::string(out);
}

Value unique(const std::string&, const Value& v, Args&, KwArgs&, int line) {
  List out;
  for (const auto& x : iterate(v, line)) {
    bool seen = false;
    for (const auto& y : out) seen = seen || py_equal(x, y);
    if (!seen) out.push_back(x);
  }
  return Value::make_list(std::move(out));
}

Value sort(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* rev = arg(a, kw, 0, "reverse");
  const Value* attr = arg(a, kw, 2, "attribute");
  List l = iterate(v, line);
  std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) {
    const Value kx = attr ? get_attr_path(x, py_str(*attr), line) : x;
    const Value ky = attr ? get_attr_path(y, py_str(*attr), line) : y;
    return compare_values(kx, ky, line) < 0;
  });
  if (rev && rev->truthy()) std::reverse(l.begin(), l.end());
  return Value::make_list(std::move(l));
}

Value sum(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* attr = arg(a, kw, 0, "attribute");
  Value total = Value::integer(0);
  if (const Value* st = arg(a, kw, 1, "start")) total = *st;
  for (const auto& x : iterate(v, line))
    total = binary("+", total, attr ? get_attr_path(x, py_str(*attr), line) : x, line);
  return total;
}

Value min_max(const std::string& name, const Value& v, Args&, KwArgs&, int line) {
  List l = iterate(v, line);
  if (l.empty()) return Value::undefined();
  Value best = l[0];
  for (const auto& x : l) {
    const int c = compare_values(x, best, line);
    if (name == "min" ? c < 0 : c > 0) best = x;
  }
  return best;
}

Value dictsort(const std::string&, const Value& v, Args&, KwArgs&, int line) {
  if (v.type != T::kDict) error(line, "dictsort needs a mapping");
  auto items = v.dict->items;
  std::stable_sort(items.begin(), items.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  List l;
  for (auto& kv : items) l.push_back(pair_value(kv.first, kv.second));
  return Value::make_list(std::move(l));
}

const std::unordered_map<std::string_view, FilterFn>& table() {
  static const std::unordered_map<std::string_view, FilterFn> t = {
      {"trim", trim},           {"length", length},       {"count", length},
      {"string", string},       {"safe", safe},           {"e", escape},
      {"escape", escape},       {"lower", change_case},   {"upper", change_case},
      {"capitalize", change_case}, {"title", change_case}, {"tojson", tojson},
      {"default", default_value}, {"d", default_value},   {"join", join},
      {"first", first_last},    {"last", first_last},     {"list", list},
      {"items", items},         {"reverse", reverse},     {"select", select},
      {"reject", select},       {"selectattr", select},   {"rejectattr", select},
      {"map", map},             {"int", to_int},          {"float", to_float},
      {"abs", abs_value},       {"round", round_value},   {"replace", replace},
      {"indent", indent},       {"unique", unique},       {"sort", sort},
      {"sum", sum},             {"min", min_max},         {"max", min_max},
      {"dictsort", dictsort},
  };
  return t;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& args, KwArgs& kwargs, int line) {
  const auto& t = table();
  auto it = t.find(name);
  if (it == t.end()) error(line, fmt::format("unsupported filter '{}'", name));
  return it->second(name, v, args, kwargs, line);
}

}  // namespace dpserve::jinja
