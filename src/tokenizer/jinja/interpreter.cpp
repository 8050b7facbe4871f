#include "tokenizer/jinja/interpreter.h"

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "tokenizer/jinja/filters.h"
#include "tokenizer/jinja/globals.h"
#include "tokenizer/jinja/limits.h"
#include "tokenizer/jinja/tests.h"
#include "tokenizer/jinja/value_ops.h"

namespace dpserve::jinja {
namespace {

using T = Value::Type;

struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;
};

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  explicit Interpreter(const Value& globals) : globals_(globals) { root_.parent = nullptr; }
  // A macro kept in a namespace created in the same loop body makes a cycle (namespace -> macro ->
  // closure -> namespace), and so does a namespace given itself or a value holding it as an attribute
  // (`set ns.n = ns`, `set ns.l = [ns]`); no value outlives the render, so emptying the closures and
  // the namespaces written here frees them.
  ~Interpreter() {
    for (auto& w : closures_) {
      if (auto c = w.lock()) c->vars.clear();
    }
    for (auto& w : written_namespaces_) {
      if (auto d = w.lock()) d->items.clear();
    }
  }
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string run(const Body& body) {
    std::string out;
    exec(body, root_, out);
    return out;
  }

 private:
  void step(int line) {
    if (++steps_ > render_caps.max_steps) error(line, "template runs too long (step limit)");
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

  // Statements.

  Flow exec(const Body& body, Scope& scope, std::string& out) {
    for (const auto& s : body) {
      const Flow f = exec_one(*s, scope, out);
      if (f != Flow::kNormal) return f;
      if (out.size() > render_caps.max_output) error(s->line, "template output too large");
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
          if (!ns.dict->written) {
            ns.dict->written = true;
            written_namespaces_.push_back(ns.dict);
          }
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
        // A macro sees the variables of the scope it is defined in, as a Jinja2 macro (a Python closure)
        // does: one defined inside a for loop reads the loop variable. Loop scopes end before a macro stored
        // away (in a namespace) may be called, so the chain up to the root is copied, innermost binding
        // first; the root scope lives as long as the render and is seen as it is at call time.
        std::shared_ptr<Scope> closure;
        if (&scope != &root_) {
          closure = std::make_shared<Scope>();
          closure->parent = &root_;
          closures_.push_back(closure);
          for (Scope* sc = &scope; sc && sc != &root_; sc = sc->parent) {
            for (const auto& [k, v] : sc->vars) closure->vars.emplace(k, v);
          }
        }
        auto fn = std::make_shared<Function>();
        // The macro's own name, for recursion, is bound per call: storing it in the closure would make a
        // reference cycle (closure -> macro -> closure) that is never freed.
        std::weak_ptr<Function> self = fn;
        *fn = [this, def, closure, self](std::vector<Value>& a, KwArgs& kw) {
          if (++depth_ > kMaxDepth) error(def->line, "macro recursion too deep");
          Scope local;
          local.parent = closure ? closure.get() : &root_;
          if (closure) {
            Value me;
            me.type = T::kFunction;
            me.fn = self.lock();
            local.vars[def->text] = std::move(me);
          }
          if (a.size() > def->targets.size()) error(def->line, fmt::format("macro '{}' takes {} arguments", def->text, def->targets.size()));
          // Jinja2 refuses a keyword no parameter has, and one naming a parameter already given by position.
          for (const auto& [k, x] : kw) {
            const auto at = std::find(def->targets.begin(), def->targets.end(), k);
            if (at == def->targets.end()) error(def->line, fmt::format("macro '{}' takes no keyword argument '{}'", def->text, k));
            if (static_cast<size_t>(at - def->targets.begin()) < a.size()) {
              error(def->line, fmt::format("macro '{}' got multiple values for argument '{}'", def->text, k));
            }
          }
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
        };
        Value v;
        v.type = T::kFunction;
        v.fn = std::move(fn);
        scope.vars[s.text] = std::move(v);
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

  // Expressions.

  Value eval(const Expr& e, Scope& scope) {
    step(e.line);
    struct Nesting {
      int& n;
      ~Nesting() { --n; }
    } nesting{++eval_nesting_};
    if (eval_nesting_ > kMaxEvalNesting) error(e.line, "expressions nested too deeply (macro calls included)");
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

  const Value& globals_;
  Scope root_;
  std::vector<std::weak_ptr<Scope>> closures_;  // of macros defined below the top scope
  std::vector<std::weak_ptr<Dict>> written_namespaces_;  // namespaces given an attribute
  int64_t steps_ = 0;
  int depth_ = 0;
  int eval_nesting_ = 0;  // eval() calls in progress
};

}  // namespace

std::string render(const Body& body, const Value& globals) {
  RenderBudget budget;
  return Interpreter(globals).run(body);
}

}  // namespace dpserve::jinja
