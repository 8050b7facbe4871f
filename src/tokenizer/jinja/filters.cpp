#include "tokenizer/jinja/filters.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "tokenizer/jinja/limits.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/tests.h"
#include "tokenizer/jinja/value_ops.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace dpserve::jinja {

namespace {

using T = Value::Type;
using Args = std::vector<Value>;
// Gets the name it was called by, so aliases and families (select / reject ...) share one function.
using FilterFn = Value (*)(const std::string& name, const Value& v, Args& a, KwArgs& kw, int line);

// What Jinja2's generator filters return; see Value::is_iterator.
Value iterator(List items) {
  Value v = Value::make_list(std::move(items));
  v.is_iterator = true;
  return v;
}

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
  // Jinja2's last is next(reversed(seq)): a generator has no reversed().
  if (name == "last" && v.is_iterator) error(line, "'generator' object is not reversible");
  List items = iterate(v, line);
  if (items.empty()) return Value::undefined();
  return name == "first" ? items.front() : items.back();
}

Value list(const std::string&, const Value& v, Args&, KwArgs&, int line) { return Value::make_list(iterate(v, line)); }

Value items(const std::string&, const Value& v, Args&, KwArgs&, int line) {
  if (v.is_undefined()) return iterator({});
  if (v.type != T::kDict) error(line, "items filter needs a mapping");
  List l;
  for (const auto& kv : v.dict->items) l.push_back(pair_value(kv.first, kv.second));
  return iterator(std::move(l));
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
  // reversed(list) is an iterator; a generator has no reversed() and Jinja2 falls back to a list.
  return v.is_iterator ? Value::make_list(std::move(l)) : iterator(std::move(l));
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
  return iterator(std::move(out));
}

Value map(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  List out;
  if (const Value* attr = kwarg(kw, "attribute")) {
    const Value* dflt = kwarg(kw, "default");
    for (const auto& x : iterate(v, line)) {
      Value r = get_attr_path(x, py_str(*attr), line);
      out.push_back(r.is_undefined() && dflt ? *dflt : r);
    }
    return iterator(std::move(out));
  }
  if (a.empty()) error(line, "map needs a filter name or attribute=");
  const std::string f = py_str(a[0]);
  std::vector<Value> fargs(a.begin() + 1, a.end());
  KwArgs none;
  for (const auto& x : iterate(v, line)) out.push_back(apply_filter(f, x, fargs, none, line));
  return iterator(std::move(out));
}

// Python's float(str): surrounding whitespace, a sign, digits with single '_' between them, a fraction and
// an exponent, or inf / infinity / nan. strtod alone also takes hex ("0x1A" would be 26, where Jinja2's
// int filter falls back to its default) and rejects the surrounding whitespace Python allows.
bool parse_py_float(const std::string& text, double* out) {
  const std::string t = py_strip(text, nullptr, true, true);
  size_t i = 0;
  std::string clean;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) clean += t[i++];
  std::string rest = t.substr(i);
  for (auto& c : rest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (rest == "inf" || rest == "infinity" || rest == "nan") {
    *out = std::strtod((clean + rest).c_str(), nullptr);
    return true;
  }
  // digits [. digits] [e [sign] digits], '_' only between two digits
  auto digits = [&](bool required) {
    const size_t start = clean.size();
    while (i < t.size()) {
      if (std::isdigit(static_cast<unsigned char>(t[i]))) {
        clean += t[i++];
      } else if (t[i] == '_' && clean.size() > start && i + 1 < t.size() &&
                 std::isdigit(static_cast<unsigned char>(t[i + 1]))) {
        ++i;
      } else {
        break;
      }
    }
    return !required || clean.size() > start;
  };
  const size_t before = clean.size();
  digits(false);
  bool any = clean.size() > before;
  if (i < t.size() && t[i] == '.') {
    clean += t[i++];
    const size_t frac = clean.size();
    digits(false);
    any = any || clean.size() > frac;
  }
  if (!any) return false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    clean += t[i++];
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) clean += t[i++];
    if (!digits(true)) return false;
  }
  if (i != t.size()) return false;
  *out = std::strtod(clean.c_str(), nullptr);
  return true;
}

// Python's int(str, 10): whitespace, a sign, decimal digits with single '_' between them.
bool parse_py_int(const std::string& text, int64_t* out) {
  const std::string t = py_strip(text, nullptr, true, true);
  size_t i = 0;
  std::string clean;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) clean += t[i++];
  const size_t start = clean.size();
  for (; i < t.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(t[i]))) {
      clean += t[i];
    } else if (!(t[i] == '_' && clean.size() > start && i + 1 < t.size() &&
                 std::isdigit(static_cast<unsigned char>(t[i + 1])))) {
      return false;
    }
  }
  if (clean.size() == start) return false;
  errno = 0;
  const long long x = std::strtoll(clean.c_str(), nullptr, 10);
  if (errno == ERANGE) return false;
  *out = x;
  return true;
}

// Jinja2's int(default=0): int(s) for strings, else int(float(s)) ("42.23" -> 42), else the default.
Value to_int(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  // int(Undefined) raises UndefinedError, which Jinja2 does not turn into the default.
  if (v.is_undefined()) error(line, fmt::format("'{}' is undefined", v.s));
  if (v.type == T::kInt) return v;
  if (v.type == T::kBool) return Value::integer(v.b);
  if (v.type == T::kFloat) return Value::integer(float_to_int(v.f, line));
  if (v.is_string()) {
    int64_t x = 0;
    if (parse_py_int(v.s, &x)) return Value::integer(x);
    double d = 0;
    if (parse_py_float(v.s, &d) && !std::isnan(d)) return Value::integer(float_to_int(d, line));
  }
  const Value* dflt = arg(a, kw, 0, "default");
  return dflt ? *dflt : Value::integer(0);
}

Value to_float(const std::string&, const Value& v, Args& a, KwArgs& kw, int) {
  if (v.is_number()) return Value::number(v.as_double());
  double d = 0;
  if (v.is_string() && parse_py_float(v.s, &d)) return Value::number(d);
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
  // Python's round(int, n >= 0) is the int itself: 3 | round prints 3, not 3.0.
  if (how == "common" && (v.type == T::kInt || v.type == T::kBool) && (!prec || prec->type != T::kInt || prec->i >= 0)) {
    return Value::integer(v.type == T::kBool ? v.b : v.i);
  }
  const double x = v.as_double() * p;
  if (how == "common") return Value::number(std::nearbyint(x) / p);
  if (how == "ceil") return Value::number(std::ceil(x) / p);
  if (how == "floor") return Value::number(std::floor(x) / p);
  error(line, "round's method must be common, ceil or floor");
}

Value replace(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* old = arg(a, kw, 0, "old");
  const Value* repl = arg(a, kw, 1, "new");
  const Value* count = arg(a, kw, 2, "count");  // replace('a', 'b', count=1) as well as positionally
  if (!old || !repl) error(line, "replace needs two arguments");
  return Value::string(py_replace(str_of(v), py_str(*old), py_str(*repl), count && count->type == T::kInt ? count->i : -1));
}

Value indent(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  // Jinja2's indent appends to its argument, which an undefined value refuses (trim or upper print it as '').
  if (v.is_undefined()) error(line, fmt::format("'{}' is undefined", v.s));
  const Value* w = arg(a, kw, 0, "width");
  const Value* first = arg(a, kw, 1, "first");
  const Value* blank = arg(a, kw, 2, "blank");
  if (w && w->type == T::kInt && (w->i < 0 || w->i > 1000)) error(line, "indent width must be 0 to 1000");
  const std::string pad = w && w->is_string() ? w->s : std::string(w && w->type == T::kInt ? w->i : 4, ' ');
  // As Jinja2: (s + "\n").splitlines() joined by "\n", so any Python line boundary (\r\n, \r, U+2028 ...)
  // comes out as "\n", and a trailing newline is kept.
  const std::vector<std::string> lines = py_splitlines(str_of(v) + "\n");
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k > 0) out += '\n';
    const bool add = k == 0 ? (first && first->truthy()) : (!lines[k].empty() || (blank && blank->truthy()));
    if (add) out += pad;
    out += lines[k];
    check_string_size(out.size(), line);
  }
  return Value::string(out);
}

// The sort key of sort, dictsort, unique, min and max. Their case_sensitive argument defaults to false:
// strings compare lower-cased (Jinja2's ignore_case), so {'B':..,'a':..} | dictsort puts 'a' first where
// a byte order would put 'B' first, and ['b', 'B'] | unique keeps one of them.
Value sort_key(const Value& x, const Value* attr, bool case_sensitive, int line) {
  Value k = attr ? get_attr_path(x, py_str(*attr), line) : x;
  if (!case_sensitive && k.is_string()) k.s = map_case(k.s, kLower);
  return k;
}

bool case_sensitive_arg(const Value* cs) { return cs && cs->truthy(); }

// Python's sorted(key=..., reverse=...): stable in both directions (equal keys keep their order
// when reversed too, so this is not a sort followed by std::reverse).
void sort_by_keys(List& items, const List& keys, bool reverse, int line) {
  std::vector<size_t> order(items.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return reverse ? compare_values(keys[y], keys[x], line) < 0 : compare_values(keys[x], keys[y], line) < 0;
  });
  List out;
  out.reserve(items.size());
  for (size_t k : order) out.push_back(std::move(items[k]));
  items = std::move(out);
}

Value unique(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const bool cs = case_sensitive_arg(arg(a, kw, 0, "case_sensitive"));
  const Value* attr = arg(a, kw, 1, "attribute");
  List out, seen;
  for (const auto& x : iterate(v, line)) {
    const Value key = sort_key(x, attr, cs, line);
    bool dup = false;
    for (const auto& y : seen) dup = dup || py_equal(key, y);
    if (dup) continue;
    seen.push_back(key);
    out.push_back(x);
  }
  return iterator(std::move(out));
}

Value sort(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* rev = arg(a, kw, 0, "reverse");
  const bool cs = case_sensitive_arg(arg(a, kw, 1, "case_sensitive"));
  const Value* attr = arg(a, kw, 2, "attribute");
  List l = iterate(v, line);
  List keys;
  for (const auto& x : l) keys.push_back(sort_key(x, attr, cs, line));
  sort_by_keys(l, keys, rev && rev->truthy(), line);
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

// min / max(case_sensitive=False, attribute=None): the first smallest / largest item, as Python's min and max.
Value min_max(const std::string& name, const Value& v, Args& a, KwArgs& kw, int line) {
  const bool cs = case_sensitive_arg(arg(a, kw, 0, "case_sensitive"));
  const Value* attr = arg(a, kw, 1, "attribute");
  List l = iterate(v, line);
  if (l.empty()) return Value::undefined();
  size_t best = 0;
  Value best_key = sort_key(l[0], attr, cs, line);
  for (size_t k = 1; k < l.size(); ++k) {
    Value key = sort_key(l[k], attr, cs, line);
    const int c = compare_values(key, best_key, line);
    if (name == "min" ? c < 0 : c > 0) best = k, best_key = std::move(key);
  }
  return l[best];
}

// dictsort(case_sensitive=False, by='key', reverse=False).
Value dictsort(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  if (v.type != T::kDict) error(line, "dictsort needs a mapping");
  const bool cs = case_sensitive_arg(arg(a, kw, 0, "case_sensitive"));
  const Value* by = arg(a, kw, 1, "by");
  const Value* rev = arg(a, kw, 2, "reverse");
  const std::string by_s = by ? py_str(*by) : "key";
  if (by_s != "key" && by_s != "value") error(line, "You can only sort by either 'key' or 'value'");
  List l, keys;
  for (const auto& [k, x] : v.dict->items) {
    l.push_back(pair_value(k, x));
    keys.push_back(sort_key(by_s == "key" ? Value::string(k) : x, nullptr, cs, line));
  }
  sort_by_keys(l, keys, rev && rev->truthy(), line);
  return Value::make_list(std::move(l));
}

// Jinja2 counts the matches of Python's \w+: runs of letters, digits (any Unicode number) and '_'.
Value wordcount(const std::string&, const Value& v, Args&, KwArgs&, int) {
  static const Regex word("[\\p{L}\\p{N}_]+");
  const std::string s = str_of(v);
  std::vector<std::pair<size_t, size_t>> spans;
  word.find_all(utf8::is_valid(s) ? s : utf8::repair(s), spans);
  return Value::integer(static_cast<int64_t>(spans.size()));
}

// batch(n, fill_with=None): lists of n items; the last one padded with fill_with when it is given.
Value batch(const std::string&, const Value& v, Args& a, KwArgs& kw, int line) {
  const Value* n = arg(a, kw, 0, "linecount");
  const Value* fill = arg(a, kw, 1, "fill_with");
  if (!n || n->type != T::kInt || n->i <= 0) error(line, "batch needs a positive integer size");
  List out, cur;
  for (auto& x : iterate(v, line)) {
    cur.push_back(std::move(x));
    if (static_cast<int64_t>(cur.size()) == n->i) out.push_back(Value::make_list(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (fill && !fill->is_none()) {
      charge_items(n->i - static_cast<int64_t>(cur.size()), line);
      while (static_cast<int64_t>(cur.size()) < n->i) cur.push_back(*fill);
    }
    out.push_back(Value::make_list(std::move(cur)));
  }
  return iterator(std::move(out));
}

const std::unordered_map<std::string_view, FilterFn>& filter_table() {
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
      {"dictsort", dictsort},   {"wordcount", wordcount}, {"batch", batch},
  };
  return t;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& args, KwArgs& kwargs, int line) {
  const auto& t = filter_table();
  auto it = t.find(name);
  if (it == t.end()) error(line, fmt::format("unsupported filter '{}'", name));
  return it->second(name, v, args, kwargs, line);
}

}  // namespace dpserve::jinja
