#include "tokenizer/jinja/globals.h"

#include <ctime>

#include "core/check.h"
#include "tokenizer/jinja/limits.h"

namespace dpserve::jinja {

using T = Value::Type;

Value builtin(const std::string& name) {
  if (name == "range") {
    return Value::function([](std::vector<Value>& a, KwArgs&) {
      int64_t start = 0, stop = 0, st = 1;
      for (const auto& x : a) {
        if (x.type != T::kInt) fail("range(): arguments must be integers");
      }
      if (a.size() == 1) {
        stop = a[0].i;
      } else if (a.size() >= 2) {
        start = a[0].i, stop = a[1].i;
        if (a.size() >= 3) st = a[2].i;
      } else {
        fail("range() expects 1 to 3 arguments");
      }
      if (st == 0) fail("range() step must not be zero");
      List out;
      for (int64_t k = start; st > 0 ? k < stop : k > stop;) {
        // Jinja2's sandbox (which transformers renders with) refuses ranges over 100000 items too.
        if (static_cast<int64_t>(out.size()) >= kMaxListItems) fail("range() too large (more than 100000 items)");
        out.push_back(Value::integer(k));
        if (__builtin_add_overflow(k, st, &k)) break;  // the next value lies beyond int64: done
      }
      charge_items(static_cast<int64_t>(out.size()), 0);
      return Value::make_list(std::move(out));
    });
  }
  if (name == "namespace" || name == "dict") {
    const bool ns = name == "namespace";
    return Value::function([ns](std::vector<Value>& a, KwArgs& kw) {
      Value d = Value::make_dict();
      d.is_namespace = ns;
      for (const auto& x : a) {
        if (x.type != T::kDict) fail("{}(): positional argument must be a mapping", ns ? "namespace" : "dict");
        for (const auto& kv : x.dict->items) d.dict->set(kv.first, kv.second);
      }
      for (auto& [k, v] : kw) d.dict->set(k, v);
      return d;
    });
  }
  if (name == "raise_exception") {
    return Value::function([](std::vector<Value>& a, KwArgs&) -> Value {
      fail("chat template raised an exception: {}", a.empty() ? std::string() : py_str(a[0]));
    });
  }
  if (name == "strftime_now") {
    return Value::function([](std::vector<Value>& a, KwArgs&) {
      if (a.empty() || !a[0].is_string()) fail("strftime_now(): expects a format string");
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof buf, a[0].s.c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  }
  return Value::undefined(name);
}

}  // namespace dpserve::jinja
