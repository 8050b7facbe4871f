#include "tokenizer/jinja/methods.h"

#include <algorithm>

#include "core/check.h"
#include "tokenizer/jinja/limits.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/value_ops.h"
#include "tokenizer/utf8.h"

namespace dpserve::jinja {

using T = Value::Type;

Value dict_method(const Value& obj, const std::string& name) {
  auto d = obj.dict;
  if (name == "items") {
    return Value::function([d](std::vector<Value>&, KwArgs&) {
      List l;
      for (const auto& kv : d->items) l.push_back(pair_value(kv.first, kv.second));
      return Value::make_list(std::move(l));
    });
  }
  if (name == "keys" || name == "values") {
    const bool keys = name == "keys";
    return Value::function([d, keys](std::vector<Value>&, KwArgs&) {
      List l;
      for (const auto& kv : d->items) l.push_back(keys ? Value::string(kv.first) : kv.second);
      return Value::make_list(std::move(l));
    });
  }
  if (name == "get") {
    return Value::function([d](std::vector<Value>& a, KwArgs&) {
      if (a.empty()) fail("get() expects a key");
      if (a[0].is_string()) {
        if (const Value* v = d->find(a[0].s)) return *v;
      }
      return a.size() > 1 ? a[1] : Value::none();
    });
  }
  return Value::undefined(name);
}

Value string_method(const Value& obj, const std::string& name) {
  const std::string s = obj.s;
  auto fn = [](auto f) { return Value::function(f); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool l = name != "rstrip", r = name != "lstrip";
    return fn([s, l, r](std::vector<Value>& a, KwArgs&) {
      return Value::string(py_strip(s, a.empty() || a[0].is_none() ? nullptr : &a[0], l, r));
    });
  }
  if (name == "split") {
    return fn([s](std::vector<Value>& a, KwArgs& kw) {
      const Value* sep = arg(a, kw, 0, "sep");
      const Value* mx = arg(a, kw, 1, "maxsplit");
      auto parts = py_split(s, sep, mx && mx->type == T::kInt ? mx->i : -1);
      charge_items(static_cast<int64_t>(parts.size()), 0);
      List l;
      for (auto& p : parts) l.push_back(Value::string(p));
      return Value::make_list(std::move(l));
    });
  }
  if (name == "startswith" || name == "endswith") {
    const bool start = name == "startswith";
    return fn([s, start](std::vector<Value>& a, KwArgs&) {
      if (a.empty()) fail("{}() expects an argument", start ? "startswith" : "endswith");
      List cands = a[0].type == T::kList ? *a[0].list : List{a[0]};
      for (const auto& c : cands) {
        if (!c.is_string()) fail("{}() argument must be str", start ? "startswith" : "endswith");
        if (c.s.size() <= s.size() &&
            (start ? s.compare(0, c.s.size(), c.s) == 0 : s.compare(s.size() - c.s.size(), c.s.size(), c.s) == 0)) {
          return Value::boolean(true);
        }
      }
      return Value::boolean(false);
    });
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    const int mode = name == "lower" ? 0 : name == "upper" ? 1 : name == "capitalize" ? 2 : 3;
    return fn([s, mode](std::vector<Value>&, KwArgs&) { return Value::string(map_case(s, mode)); });
  }
  if (name == "replace") {
    return fn([s](std::vector<Value>& a, KwArgs&) {
      if (a.size() < 2 || !a[0].is_string() || !a[1].is_string()) fail("replace() expects two strings");
      return Value::string(py_replace(s, a[0].s, a[1].s, a.size() > 2 && a[2].type == T::kInt ? a[2].i : -1));
    });
  }
  if (name == "rfind") {
    return fn([s](std::vector<Value>& a, KwArgs&) {
      if (a.empty() || !a[0].is_string()) fail("rfind() expects a string");
      const size_t p = s.rfind(a[0].s);
      if (p == std::string::npos) return Value::integer(-1);
      return Value::integer(static_cast<int64_t>(cp_count(s.substr(0, p))));
    });
  }
  if (name == "rsplit") {
    // str.rsplit(sep, maxsplit): as split, but the maxsplit cuts are taken from the right.
    return fn([s](std::vector<Value>& a, KwArgs& kw) {
      const Value* sep = arg(a, kw, 0, "sep");
      const Value* mx = arg(a, kw, 1, "maxsplit");
      const int64_t n = mx && mx->type == T::kInt ? mx->i : -1;
      std::vector<std::string> parts;
      if (n < 0) {
        parts = py_split(s, sep, -1);
      } else if (!sep || sep->is_none() || sep->is_undefined()) {
        // Words from the right; the rest keeps its leading whitespace and loses its trailing whitespace.
        auto off = cp_offsets(s);
        size_t e = off.size() - 1;
        auto is_sp = [&](size_t i) {
          size_t len;
          return py_space(utf8::decode_at(s, off[i], &len));
        };
        while (e > 0) {
          while (e > 0 && is_sp(e - 1)) --e;
          if (e == 0) break;
          if (static_cast<int64_t>(parts.size()) == n) {
            parts.push_back(s.substr(0, off[e]));
            break;
          }
          size_t b = e;
          while (b > 0 && !is_sp(b - 1)) --b;
          parts.push_back(s.substr(off[b], off[e] - off[b]));
          e = b;
        }
        std::reverse(parts.begin(), parts.end());
      } else {
        if (!sep->is_string() || sep->s.empty()) fail("rsplit(): separator must be a non-empty string");
        size_t end = s.size();
        while (static_cast<int64_t>(parts.size()) < n) {
          const size_t hit = end >= sep->s.size() ? s.rfind(sep->s, end - sep->s.size()) : std::string::npos;
          if (hit == std::string::npos) break;
          parts.push_back(s.substr(hit + sep->s.size(), end - hit - sep->s.size()));
          end = hit;
        }
        parts.push_back(s.substr(0, end));
        std::reverse(parts.begin(), parts.end());
      }
      charge_items(static_cast<int64_t>(parts.size()), 0);
      List l;
      for (auto& p : parts) l.push_back(Value::string(std::move(p)));
      return Value::make_list(std::move(l));
    });
  }
  if (name == "find" || name == "count") {
    const bool find = name == "find";
    return fn([s, find](std::vector<Value>& a, KwArgs&) {
      if (a.empty() || !a[0].is_string()) fail("{}() expects a string", find ? "find" : "count");
      if (find) {
        const size_t p = s.find(a[0].s);
        if (p == std::string::npos) return Value::integer(-1);
        return Value::integer(static_cast<int64_t>(cp_count(s.substr(0, p))));
      }
      int64_t n = 0;
      if (a[0].s.empty()) return Value::integer(static_cast<int64_t>(cp_count(s) + 1));
      for (size_t p = s.find(a[0].s); p != std::string::npos; p = s.find(a[0].s, p + a[0].s.size())) ++n;
      return Value::integer(n);
    });
  }
  if (name == "join") {
    return fn([s](std::vector<Value>& a, KwArgs&) {
      if (a.empty()) fail("join() expects an iterable");
      std::string out;
      bool first = true;
      for (const auto& x : iterate(a[0], 0)) {
        if (!x.is_string()) fail("join(): sequence item must be str, not {}", type_name(x));
        if (!first) out += s;
        out += x.s;
        check_string_size(out.size(), 0);
        first = false;
      }
      return Value::string(out);
    });
  }
  if (name == "splitlines") {
    return fn([s](std::vector<Value>&, KwArgs&) {
      List l;
      for (auto& line : py_splitlines(s)) l.push_back(Value::string(std::move(line)));
      return Value::make_list(std::move(l));
    });
  }
  return Value::undefined(name);
}

}  // namespace dpserve::jinja
