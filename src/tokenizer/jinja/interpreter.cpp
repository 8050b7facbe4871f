#include "tokenizer/jinja/interpreter.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace dpserve::jinja {
namespace {

using T = Value::Type;

constexpr size_t kMaxOutput = 64u << 20;   // a template that writes more is runaway
// loop iterations + expression evaluations. The fuzz build (scripts/fuzz.sh) lowers it, since a step
// costs ~50x more under ASan and the cap must stop a template within libFuzzer's timeout there too.
#ifndef DPSERVE_JINJA_MAX_STEPS
#define DPSERVE_JINJA_MAX_STEPS 2'000'000
#endif
constexpr int64_t kMaxSteps = DPSERVE_JINJA_MAX_STEPS;
constexpr int kMaxDepth = 256;             // macro recursion
constexpr int64_t kMaxListItems = 100'000;  // range() and list repetition, as Jinja2's sandbox caps range()

[[noreturn]] void error(int line, const std::string& msg) { fail("chat template line {}: {}", line, msg); }

// Python ints do not overflow; ours are int64, so overflow is an error instead of undefined behaviour.
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

// float -> int as Python's int() truncates it; values outside int64 are an error, not UB.
int64_t float_to_int(double d, int line) {
  if (!(d > -9.2233720368547758e18 && d < 9.2233720368547758e18)) error(line, "float too large for int()");
  return static_cast<int64_t>(d);
}

// ---- string helpers (Python semantics on code points) ----

std::vector<size_t> cp_offsets(const std::string& s) {
  std::vector<size_t> off;
  for (size_t i = 0; i < s.size();) {
    off.push_back(i);
    size_t len;
    utf8::decode_at(s, i, &len);
    i += len;
  }
  off.push_back(s.size());
  return off;
}

bool py_space(uint32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto off = cp_offsets(s);
  const size_t n = off.size() - 1;
  std::vector<uint32_t> set;
  if (chars && chars->is_string()) {
    for (size_t i = 0; i < chars->s.size();) {
      size_t len;
      set.push_back(utf8::decode_at(chars->s, i, &len));
      i += len;
    }
  }
  auto strip_it = [&](size_t k) {
    size_t len;
    const uint32_t c = utf8::decode_at(s, off[k], &len);
    if (chars && chars->is_string()) return std::find(set.begin(), set.end(), c) != set.end();
    return py_space(c);
  };
  size_t b = 0, e = n;
  if (left) {
    while (b < e && strip_it(b)) ++b;
  }
  if (right) {
    while (e > b && strip_it(e - 1)) --e;
  }
  return s.substr(off[b], off[e] - off[b]);
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->is_none() || sep->is_undefined()) {
    auto off = cp_offsets(s);
    size_t k = 0;
    const size_t n = off.size() - 1;
    auto is_sp = [&](size_t i) {
      size_t len;
      return py_space(utf8::decode_at(s, off[i], &len));
    };
    while (k < n) {
      while (k < n && is_sp(k)) ++k;
      if (k >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = n;
        while (e > k && is_sp(e - 1)) --e;
        out.push_back(s.substr(off[k], off[e] - off[k]));
        break;
      }
      size_t j = k;
      while (j < n && !is_sp(j)) ++j;
      out.push_back(s.substr(off[k], off[j] - off[k]));
      k = j;
    }
    return out;
  }
  if (!sep->is_string()) fail("split(): separator must be a string");
  if (sep->s.empty()) fail("split(): empty separator");
  size_t pos = 0;
  for (size_t hit; (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) &&
                   (hit = s.find(sep->s, pos)) != std::string::npos;
       pos = hit + sep->s.size()) {
    out.push_back(s.substr(pos, hit - pos));
  }
  out.push_back(s.substr(pos));
  return out;
}

std::string py_replace(const std::string& s, const std::string& a, const std::string& b, int64_t count) {
  std::string out;
  if (a.empty()) {
    auto off = cp_offsets(s);
    int64_t done = 0;
    for (size_t k = 0; k + 1 < off.size(); ++k) {
      if (count < 0 || done < count) out += b, ++done;
      out.append(s, off[k], off[k + 1] - off[k]);
    }
    if (count < 0 || done < count) out += b;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  for (size_t hit; (count < 0 || done < count) && (hit = s.find(a, pos)) != std::string::npos; pos = hit + a.size()) {
    out.append(s, pos, hit - pos);
    out += b;
    ++done;
  }
  out.append(s, pos);
  return out;
}

std::string map_case(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 capitalize, 3 title
  std::string out;
  bool prev_cased = false;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    uint32_t c = utf8::decode_at(s, i, &len);
    const bool alpha = (c < 0x80 && std::isalpha(static_cast<int>(c))) || c >= 0x80;
    auto lower = [](uint32_t x) { return x < 0x80 ? static_cast<uint32_t>(std::tolower(static_cast<int>(x))) : x; };
    auto upper = [](uint32_t x) { return x < 0x80 ? static_cast<uint32_t>(std::toupper(static_cast<int>(x))) : x; };
    switch (mode) {
      case 0: c = lower(c); break;
      case 1: c = upper(c); break;
      case 2: c = first ? upper(c) : lower(c); break;
      case 3: c = prev_cased ? lower(c) : upper(c); break;
    }
    prev_cased = alpha;
    first = false;
    utf8::append_codepoint(out, c);
    i += len;
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

int64_t py_len(const Value& v, int line) {
  switch (v.type) {
    case T::kUndefined: return 0;
    case T::kString: return static_cast<int64_t>(cp_offsets(v.s).size() - 1);
    case T::kList: return static_cast<int64_t>(v.list->size());
    case T::kDict: return static_cast<int64_t>(v.dict->items.size());
    default: error(line, fmt::format("object of type '{}' has no len()", type_name(v)));
  }
}

// Items of an iterable (dict -> keys, string -> chars).
List iterate(const Value& v, int line) {
  switch (v.type) {
    case T::kUndefined: return {};
    case T::kList: return *v.list;
    case T::kDict: {
      List keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case T::kString: {
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
    case T::kDict: return item.is_string() && container.dict->find(item.s) != nullptr;
    default: error(line, fmt::format("argument of type '{}' is not iterable", type_name(container)));
  }
}

Value slice(const Value& v, const Value* start, const Value* stop, const Value* step, int line) {
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
  return Value::make_list(std::move(out));
}

const Value* kwarg(const KwArgs& kw, const char* name) {
  for (const auto& [k, v] : kw) {
    if (k == name) return &v;
  }
  return nullptr;
}

// Positional argument i, else keyword `name`, else null.
const Value* arg(const std::vector<Value>& args, const KwArgs& kw, size_t i, const char* name) {
  if (i < args.size()) return &args[i];
  return kwarg(kw, name);
}

Value pair_value(const std::string& k, const Value& v) {
  Value p = Value::make_list({Value::string(k), v});
  p.is_tuple = true;
  return p;
}

struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;
};

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  explicit Interpreter(const Value& globals) : globals_(globals) { root_.parent = nullptr; }

  std::string run(const Body& body) {
    std::string out;
    exec(body, root_, out);
    return out;
  }

 private:
  void step(int line) {
    if (++steps_ > kMaxSteps) error(line, "template runs too long (step limit)");
  }

  Value lookup(const std::string& name, Scope& scope) {
    for (Scope* s = &scope; s; s = s->parent) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    if (globals_.type == T::kDict) {
      if (const Value* v = globals_.dict->find(name)) return *v;
    }
    if (Value b = builtin(name); !b.is_undefined()) return b;
    return Value::undefined(name);
  }

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

  // ---- statements ----

  Flow exec(const Body& body, Scope& scope, std::string& out) {
    for (const auto& s : body) {
      const Flow f = exec_one(*s, scope, out);
      if (f != Flow::kNormal) return f;
      if (out.size() > kMaxOutput) error(s->line, "template output too large");
    }
    return Flow::kNormal;
  }

  Flow exec_one(const Stmt& s, Scope& scope, std::string& out) {
    step(s.line);
    switch (s.kind) {
      case Stmt::Kind::kText: out += s.text; return Flow::kNormal;
      case Stmt::Kind::kOutput: {
        const Value v = eval(*s.expr, scope);
        out += py_str(v);
        return Flow::kNormal;
      }
      case Stmt::Kind::kIf:
        for (const auto& [cond, body] : s.branches) {
          if (eval(*cond, scope).truthy()) return exec(body, scope, out);
        }
        return exec(s.else_body, scope, out);
      case Stmt::Kind::kFor: return exec_for(s, scope, out);
      case Stmt::Kind::kSet: {
        Value v = eval(*s.expr, scope);
        if (!s.attr.empty()) {
          Value ns = lookup(s.text, scope);
          if (!(ns.type == T::kDict && ns.is_namespace)) error(s.line, "cannot assign attribute on non-namespace object");
          ns.dict->set(s.attr, std::move(v));
        } else if (s.targets.size() == 1) {
          scope.vars[s.text] = std::move(v);
        } else {
          assign_unpack(s.targets, v, scope, s.line);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        exec(s.body, scope, captured);
        scope.vars[s.text] = Value::string(captured);
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro: {
        const Stmt* def = &s;
        Scope* def_scope = &root_;
        scope.vars[s.text] = Value::function([this, def, def_scope](std::vector<Value>& a, KwArgs& kw) {
          if (++depth_ > kMaxDepth) error(def->line, "macro recursion too deep");
          Scope local;
          local.parent = def_scope;
          if (a.size() > def->targets.size()) error(def->line, fmt::format("macro '{}' takes {} arguments", def->text, def->targets.size()));
          for (size_t k = 0; k < def->targets.size(); ++k) {
            if (k < a.size()) {
              local.vars[def->targets[k]] = a[k];
            } else if (const Value* v = kwarg(kw, def->targets[k].c_str())) {
              local.vars[def->targets[k]] = *v;
            } else if (def->defaults[k]) {
              local.vars[def->targets[k]] = eval(*def->defaults[k], local);
            } else {
              local.vars[def->targets[k]] = Value::undefined(def->targets[k]);
            }
          }
          std::string body;
          exec(def->body, local, body);
          --depth_;
          return Value::string(body);
        });
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak: return Flow::kBreak;
      case Stmt::Kind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void assign_unpack(const std::vector<std::string>& targets, const Value& v, Scope& scope, int line) {
    List items = iterate(v, line);
    if (items.size() != targets.size()) {
      error(line, fmt::format("cannot unpack {} values into {} names", items.size(), targets.size()));
    }
    for (size_t k = 0; k < targets.size(); ++k) scope.vars[targets[k]] = items[k];
  }

  Flow exec_for(const Stmt& s, Scope& scope, std::string& out) {
    const Value seq = eval(*s.expr, scope);
    if (seq.is_none()) error(s.line, "'NoneType' object is not iterable");
    List items = iterate(seq, s.line);
    if (s.filter) {
      List kept;
      for (auto& it : items) {
        Scope fs;
        fs.parent = &scope;
        bind_targets(s, it, fs);
        if (eval(*s.filter, fs).truthy()) kept.push_back(std::move(it));
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(s.else_body, scope, out);
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < n; ++k) {
      step(s.line);
      Scope it;
      it.parent = &scope;
      bind_targets(s, items[k], it);
      Value loop = Value::make_dict();
      auto& d = *loop.dict;
      d.set("index", Value::integer(k + 1));
      d.set("index0", Value::integer(k));
      d.set("revindex", Value::integer(n - k));
      d.set("revindex0", Value::integer(n - k - 1));
      d.set("first", Value::boolean(k == 0));
      d.set("last", Value::boolean(k == n - 1));
      d.set("length", Value::integer(n));
      d.set("depth", Value::integer(1));
      d.set("depth0", Value::integer(0));
      d.set("previtem", k > 0 ? items[k - 1] : Value::undefined("previtem"));
      d.set("nextitem", k + 1 < n ? items[k + 1] : Value::undefined("nextitem"));
      d.set("cycle", Value::function([k](std::vector<Value>& a, KwArgs&) {
        if (a.empty()) fail("loop.cycle() needs at least one argument");
        return a[static_cast<size_t>(k) % a.size()];
      }));
      it.vars["loop"] = loop;
      const Flow f = exec(s.body, it, out);
      if (f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  void bind_targets(const Stmt& s, const Value& item, Scope& scope) {
    if (s.targets.size() == 1) {
      scope.vars[s.targets[0]] = item;
    } else {
      assign_unpack(s.targets, item, scope, s.line);
    }
  }

  // ---- expressions ----

  Value eval(const Expr& e, Scope& scope) {
    step(e.line);
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.value;
      case Expr::Kind::kName: return lookup(e.name, scope);
      case Expr::Kind::kAttr: return get_attr(eval(*e.a, scope), e.name, e.line);
      case Expr::Kind::kItem: return get_item(eval(*e.a, scope), eval(*e.b, scope), e.line);
      case Expr::Kind::kSlice: {
        const Value v = eval(*e.a, scope);
        if (v.is_undefined()) error(e.line, fmt::format("'{}' is undefined", v.s));
        Value parts[3];
        for (int k = 0; k < 3; ++k) {
          if (e.args[k]) parts[k] = eval(*e.args[k], scope);
        }
        return slice(v, e.args[0] ? &parts[0] : nullptr, e.args[1] ? &parts[1] : nullptr, e.args[2] ? &parts[2] : nullptr, e.line);
      }
      case Expr::Kind::kCall: {
        const Value f = eval(*e.a, scope);
        std::vector<Value> args;
        KwArgs kw;
        for (const auto& a : e.args) args.push_back(eval(*a, scope));
        for (const auto& [k, v] : e.kwargs) kw.emplace_back(k, eval(*v, scope));
        if (f.type != T::kFunction) {
          if (f.is_undefined()) error(e.line, fmt::format("'{}' is undefined", f.s));
          error(e.line, fmt::format("'{}' object is not callable", type_name(f)));
        }
        try {
          return (*f.fn)(args, kw);
        } catch (const Error& err) {
          const std::string m = err.what();
          if (m.rfind("chat template", 0) == 0) throw;
          error(e.line, m);
        }
      }
      case Expr::Kind::kFilter: {
        Value v = eval(*e.a, scope);
        std::vector<Value> args;
        KwArgs kw;
        for (const auto& a : e.args) args.push_back(eval(*a, scope));
        for (const auto& [k, x] : e.kwargs) kw.emplace_back(k, eval(*x, scope));
        return apply_filter(e.name, v, args, kw, e.line);
      }
      case Expr::Kind::kTest: {
        const Value v = eval(*e.a, scope);
        std::vector<Value> args;
        for (const auto& a : e.args) args.push_back(eval(*a, scope));
        const bool r = apply_test(e.name, v, args, e.line);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::Kind::kNeg: {
        const Value v = eval(*e.a, scope);
        if (v.type == T::kInt || v.type == T::kBool) return Value::integer(sub_int(0, v.type == T::kBool ? v.b : v.i, e.line));
        if (v.type == T::kFloat) return Value::number(-v.f);
        error(e.line, fmt::format("bad operand type for unary -: '{}'", type_name(v)));
      }
      case Expr::Kind::kNot: return Value::boolean(!eval(*e.a, scope).truthy());
      case Expr::Kind::kAnd: {
        Value l = eval(*e.a, scope);
        return l.truthy() ? eval(*e.b, scope) : l;
      }
      case Expr::Kind::kOr: {
        Value l = eval(*e.a, scope);
        return l.truthy() ? l : eval(*e.b, scope);
      }
      case Expr::Kind::kBinary: return binary(e.name, eval(*e.a, scope), eval(*e.b, scope), e.line);
      case Expr::Kind::kCompare: {
        Value left = eval(*e.a, scope);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k], scope);
          const std::string& op = e.ops[k];
          bool r;
          if (op == "==") {
            r = py_equal(left, right);
          } else if (op == "!=") {
            r = !py_equal(left, right);
          } else if (op == "in") {
            r = contains(right, left, e.line);
          } else if (op == "not in") {
            r = !contains(right, left, e.line);
          } else {
            const int c = compare_values(left, right, e.line);
            r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
          }
          if (!r) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::kTernary:
        if (eval(*e.c, scope).truthy()) return eval(*e.a, scope);
        return e.b ? eval(*e.b, scope) : Value::undefined();
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        List l;
        for (const auto& a : e.args) l.push_back(eval(*a, scope));
        Value v = Value::make_list(std::move(l));
        v.is_tuple = e.kind == Expr::Kind::kTuple;
        return v;
      }
      case Expr::Kind::kDict: {
        Value d = Value::make_dict();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k], scope);
          if (!key.is_string()) error(e.line, "only string keys are supported in dict literals");
          d.dict->set(key.s, eval(*e.args[k + 1], scope));
        }
        return d;
      }
    }
    error(e.line, "unsupported expression");
  }

  Value binary(const std::string& op, const Value& a, const Value& b, int line) {
    auto bounded = [&](std::string s) {  // memory stays bounded even when nothing is printed
      if (s.size() > kMaxOutput) error(line, "string too large");
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
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
      if (ints) return Value::integer(add_int(x, y, line));
      if (a.is_number() && b.is_number()) return Value::number(a.as_double() + b.as_double());
      return bad();
    }
    if (op == "*") {
      if ((a.is_string() || a.type == T::kList) && (b.type == T::kInt)) {
        const auto len = static_cast<int64_t>(a.is_string() ? a.s.size() : a.list->size());
        // Lists hold ~100-byte values, so they get range()'s item cap rather than the byte cap.
        const int64_t cap = a.is_string() ? static_cast<int64_t>(kMaxOutput) : kMaxListItems;
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
        List l;
        for (int64_t k = 0; k < b.i; ++k) l.insert(l.end(), a.list->begin(), a.list->end());
        return Value::make_list(std::move(l));
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

  static Value dict_method(const Value& obj, const std::string& name) {
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

  static Value string_method(const Value& obj, const std::string& name) {
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
        List l;
        for (auto& p : py_split(s, sep, mx && mx->type == T::kInt ? mx->i : -1)) l.push_back(Value::string(p));
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
    if (name == "find" || name == "count") {
      const bool find = name == "find";
      return fn([s, find](std::vector<Value>& a, KwArgs&) {
        if (a.empty() || !a[0].is_string()) fail("{}() expects a string", find ? "find" : "count");
        if (find) {
          const size_t p = s.find(a[0].s);
          if (p == std::string::npos) return Value::integer(-1);
          return Value::integer(static_cast<int64_t>(cp_offsets(s.substr(0, p)).size() - 1));
        }
        int64_t n = 0;
        if (a[0].s.empty()) return Value::integer(static_cast<int64_t>(cp_offsets(s).size()));
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
          first = false;
        }
        return Value::string(out);
      });
    }
    if (name == "splitlines") {
      return fn([s](std::vector<Value>&, KwArgs&) {
        List l;
        size_t b = 0;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s[k] == '\n' || s[k] == '\r') {
            l.push_back(Value::string(s.substr(b, k - b)));
            if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
            b = k + 1;
          }
        }
        if (b < s.size()) l.push_back(Value::string(s.substr(b)));
        return Value::make_list(std::move(l));
      });
    }
    return Value::undefined(name);
  }

  bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& a, int line) {
    auto need = [&](size_t n) {
      if (a.size() < n) error(line, fmt::format("test '{}' needs an argument", name));
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.type == T::kInt;
    if (name == "float") return v.type == T::kFloat;
    if (name == "boolean") return v.type == T::kBool;
    if (name == "true") return v.type == T::kBool && v.b;
    if (name == "false") return v.type == T::kBool && !v.b;
    if (name == "mapping") return v.type == T::kDict;
    if (name == "iterable") return v.type == T::kList || v.type == T::kDict || v.is_string() || v.is_undefined();
    if (name == "sequence") return v.type == T::kList || v.type == T::kDict || v.is_string();
    if (name == "callable") return v.type == T::kFunction;
    if (name == "odd" || name == "even") {
      if (v.type != T::kInt) error(line, fmt::format("test '{}' needs an integer", name));
      return (((v.i % 2) + 2) % 2 == 1) == (name == "odd");
    }
    if (name == "divisibleby") {
      need(1);
      if (v.type != T::kInt || a[0].type != T::kInt || a[0].i == 0) error(line, "divisibleby needs non-zero integers");
      return v.i % a[0].i == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==" || name == "sameas") {
      need(1);
      return py_equal(v, a[0]) && (name != "sameas" || v.type == a[0].type);
    }
    if (name == "ne") {
      need(1);
      return !py_equal(v, a[0]);
    }
    if (name == "lt" || name == "gt" || name == "le" || name == "ge") {
      need(1);
      const int c = compare_values(v, a[0], line);
      return name == "lt" ? c < 0 : name == "gt" ? c > 0 : name == "le" ? c <= 0 : c >= 0;
    }
    if (name == "in") {
      need(1);
      return contains(a[0], v, line);
    }
    if (name == "lower" || name == "upper") return v.is_string() && map_case(v.s, name == "lower" ? 0 : 1) == v.s;
    error(line, fmt::format("unknown test '{}'", name));
  }

  Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& a, KwArgs& kw, int line) {
    auto str_of = [&](const Value& x) { return x.is_string() ? x.s : py_str(x); };
    if (name == "trim") return Value::string(py_strip(str_of(v), arg(a, kw, 0, "chars"), true, true));
    if (name == "length" || name == "count") return Value::integer(py_len(v, line));
    if (name == "string") return Value::string(py_str(v));
    if (name == "safe") return v;
    if (name == "e" || name == "escape") return Value::string(html_escape(str_of(v)));
    if (name == "lower") return Value::string(map_case(str_of(v), 0));
    if (name == "upper") return Value::string(map_case(str_of(v), 1));
    if (name == "capitalize") return Value::string(map_case(str_of(v), 2));
    if (name == "title") return Value::string(map_case(str_of(v), 3));
    if (name == "tojson") {
      const Value* indent = arg(a, kw, 0, "indent");
      const Value* ensure = kwarg(kw, "ensure_ascii");
      const Value* sort = kwarg(kw, "sort_keys");
      const Value* seps = kwarg(kw, "separators");
      std::string item_sep, key_sep = ": ";
      if (seps && seps->type == T::kList && seps->list->size() == 2) {
        item_sep = py_str((*seps->list)[0]);
        key_sep = py_str((*seps->list)[1]);
      }
      const int ind = indent && indent->type == T::kInt ? static_cast<int>(indent->i) : -1;
      return Value::string(to_json(v, ind, ensure && ensure->truthy(), sort && sort->truthy(), item_sep, key_sep));
    }
    if (name == "default" || name == "d") {
      const Value* dflt = arg(a, kw, 0, "default_value");
      const Value* boolean = arg(a, kw, 1, "boolean");
      const bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
      return use ? (dflt ? *dflt : Value::string("")) : v;
    }
    if (name == "join") {
      const Value* sep = arg(a, kw, 0, "d");
      const Value* attr = arg(a, kw, 1, "attribute");
      std::string out;
      bool first = true;
      for (const auto& x : iterate(v, line)) {
        if (!first) out += sep ? py_str(*sep) : "";
        out += py_str(attr ? get_attr(x, py_str(*attr), line) : x);
        first = false;
      }
      return Value::string(out);
    }
    if (name == "first" || name == "last") {
      List items = iterate(v, line);
      if (items.empty()) return Value::undefined();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return Value::make_list(iterate(v, line));
    if (name == "items") {
      if (v.is_undefined()) return Value::make_list();
      if (v.type != T::kDict) error(line, "items filter needs a mapping");
      List l;
      for (const auto& kv : v.dict->items) l.push_back(pair_value(kv.first, kv.second));
      return Value::make_list(std::move(l));
    }
    if (name == "reverse") {
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
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
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
    if (name == "map") {
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
    if (name == "int") {
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
    if (name == "float") {
      if (v.is_number()) return Value::number(v.as_double());
      if (v.is_string()) {
        char* end = nullptr;
        const double d = std::strtod(v.s.c_str(), &end);
        if (!v.s.empty() && end && *end == '\0') return Value::number(d);
      }
      const Value* dflt = arg(a, kw, 0, "default");
      return dflt ? *dflt : Value::number(0);
    }
    if (name == "abs") {
      if (v.type == T::kInt) return Value::integer(v.i < 0 ? sub_int(0, v.i, line) : v.i);
      if (v.type == T::kFloat) return Value::number(std::fabs(v.f));
      error(line, "abs needs a number");
    }
    if (name == "round") {
      const Value* prec = arg(a, kw, 0, "precision");
      const double p = std::pow(10.0, prec && prec->type == T::kInt ? static_cast<double>(prec->i) : 0.0);
      if (!v.is_number()) error(line, "round needs a number");
      return Value::number(std::round(v.as_double() * p) / p);
    }
    if (name == "replace") {
      if (a.size() < 2) error(line, "replace needs two arguments");
      return Value::string(py_replace(str_of(v), py_str(a[0]), py_str(a[1]), a.size() > 2 && a[2].type == T::kInt ? a[2].i : -1));
    }
    if (name == "indent") {
      const Value* w = arg(a, kw, 0, "width");
      const Value* first = arg(a, kw, 1, "first");
      const Value* blank = arg(a, kw, 2, "blank");
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
        if (nl == std::string::npos) break;
        out += '\n';
        b = nl + 1;
        first_line = false;
      }
      return Value::string(out);
    }
    if (name == "unique") {
      List out;
      for (const auto& x : iterate(v, line)) {
        bool seen = false;
        for (const auto& y : out) seen = seen || py_equal(x, y);
        if (!seen) out.push_back(x);
      }
      return Value::make_list(std::move(out));
    }
    if (name == "sort") {
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
    if (name == "sum") {
      const Value* attr = arg(a, kw, 0, "attribute");
      Value total = Value::integer(0);
      if (const Value* st = arg(a, kw, 1, "start")) total = *st;
      for (const auto& x : iterate(v, line)) total = binary("+", total, attr ? get_attr_path(x, py_str(*attr), line) : x, line);
      return total;
    }
    if (name == "min" || name == "max") {
      List l = iterate(v, line);
      if (l.empty()) return Value::undefined();
      Value best = l[0];
      for (const auto& x : l) {
        const int c = compare_values(x, best, line);
        if (name == "min" ? c < 0 : c > 0) best = x;
      }
      return best;
    }
    if (name == "dictsort") {
      if (v.type != T::kDict) error(line, "dictsort needs a mapping");
      auto items = v.dict->items;
      std::stable_sort(items.begin(), items.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      List l;
      for (auto& kv : items) l.push_back(pair_value(kv.first, kv.second));
      return Value::make_list(std::move(l));
    }
    error(line, fmt::format("unsupported filter '{}'", name));
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

  const Value& globals_;
  Scope root_;
  int64_t steps_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string render(const Body& body, const Value& globals) { return Interpreter(globals).run(body); }

}  // namespace dpserve::jinja
