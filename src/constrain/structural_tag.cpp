#include "constrain/structural_tag.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "constrain/gbnf_compiler.h"
#include "constrain/regex_compiler.h"
#include "constrain/trigger_text.h"
#include "core/check.h"

namespace dpserve::constrain {
namespace {

using ojson = nlohmann::ordered_json;

constexpr int kMaxFormatDepth = 64;
// Where an unlimited format (any_text, triggered_tags) stops: at the end of the output, or at one of
// the end strings of the tag around it.
struct End {
  bool output = true;
  std::vector<std::string> strings;
};

// One tag of triggered_tags / tags_with_separator, read but not compiled.
struct TagItem {
  std::string begin;
  std::vector<std::string> ends;
  const ojson* content = nullptr;  // a format
  std::string at;                  // its path, for errors
  bool legacy = false;             // content is a bare JSON Schema (the legacy shape's `schema`)
};

std::string json_dumped(const std::string& s) { return ojson(s).dump(); }

class Compiler {
 public:
  Compiler(Grammar& g, const JsonSchemaOptions& opt) : g_(g), json_(g, opt) {}

  ExprId root(const ojson& spec) {
    if (!spec.is_object()) fail("a structural tag must be a JSON object");
    if (spec.contains("type") && spec["type"] != "structural_tag")
      fail("'type' must be \"structural_tag\", got {}", spec["type"].dump());
    if (spec.contains("structures") || spec.contains("triggers")) return legacy(spec);
    only(spec, {"type", "format"}, "");
    if (!spec.contains("format")) fail("a structural tag needs 'format' (or the legacy 'structures' and 'triggers')");
    return ended(spec["format"], End{}, "format", 0);
  }

 private:
  // ---- reading the JSON ----

  static std::string join(const std::string& at, const std::string& key) { return at.empty() ? key : at + "." + key; }

  static void only(const ojson& f, std::initializer_list<const char*> allowed, const std::string& at) {
    for (const auto& [k, v] : f.items()) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || k == a;
      if (!ok) {
        const std::string type = f.contains("type") && f["type"].is_string() ? f["type"].get<std::string>() : "";
        fail("'{}' is not a field of {}", join(at, k), type.empty() ? "a structural tag" : "a '" + type + "' format");
      }
    }
  }

  static const ojson& need(const ojson& f, const char* key, const std::string& at) {
    if (!f.contains(key) || f[key].is_null()) fail("'{}' is required", join(at, key));
    return f[key];
  }

  static std::string string_field(const ojson& f, const char* key, const std::string& at) {
    const ojson& v = need(f, key, at);
    if (!v.is_string()) fail("'{}' must be a string", join(at, key));
    return v.get<std::string>();
  }

  static std::vector<std::string> strings(const ojson& v, const std::string& at, bool allow_empty_list) {
    if (v.is_string()) return {v.get<std::string>()};
    if (!v.is_array() || (v.empty() && !allow_empty_list))
      fail("'{}' must be {}an array of strings", at, allow_empty_list ? "" : "a string or a non-empty ");
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string() || v[i].get<std::string>().empty())
        fail("'{}[{}]' must be a non-empty string", at, i);
      out.push_back(v[i].get<std::string>());
    }
    return out;
  }

  static bool bool_field(const ojson& f, const char* key, const std::string& at) {
    if (!f.contains(key) || f[key].is_null()) return false;
    if (!f[key].is_boolean()) fail("'{}' must be a boolean", join(at, key));
    return f[key].get<bool>();
  }

  // The formats of a sequence's or an or's `elements`, each compiled by `one(format, path, last)`.
  template <class F>
  static std::vector<ExprId> each_element(const ojson& f, const std::string& at, F one) {
    only(f, {"type", "elements"}, at);
    const ojson& el = elements(f, "elements", at);
    std::vector<ExprId> out;
    for (size_t i = 0; i < el.size(); ++i)
      out.push_back(one(el[i], fmt::format("{}.elements[{}]", at, i), i + 1 == el.size()));
    return out;
  }

  static const ojson& elements(const ojson& f, const char* key, const std::string& at) {
    const ojson& v = need(f, key, at);
    if (!v.is_array() || v.empty()) fail("'{}' must be a non-empty array of formats", join(at, key));
    return v;
  }

  static std::string type_of(const ojson& f, const std::string& at, int depth) {
    if (depth > kMaxFormatDepth) fail("'{}': formats nest deeper than {}", at, kMaxFormatDepth);
    if (!f.is_object()) fail("'{}' must be a format object", at);
    return string_field(f, "type", at);
  }

  TagItem read_tag(const ojson& f, const std::string& at, int depth) {
    if (type_of(f, at, depth) != "tag") fail("'{}' must be a format of type 'tag'", at);
    only(f, {"type", "begin", "content", "end"}, at);
    TagItem t;
    if (!need(f, "begin", at).is_string())
      fail("'{}' must be a string (token begins are not supported)", join(at, "begin"));
    t.begin = f["begin"].get<std::string>();
    const ojson& end = need(f, "end", at);
    if (end.is_string()) {
      t.ends = {end.get<std::string>()};
    } else if (end.is_array() && !end.empty()) {
      for (size_t i = 0; i < end.size(); ++i) {
        if (!end[i].is_string()) fail("'{}[{}]' must be a string (token ends are not supported)", join(at, "end"), i);
        t.ends.push_back(end[i].get<std::string>());
      }
    } else {
      fail("'{}' must be a string or a non-empty array of strings (token ends are not supported)", join(at, "end"));
    }
    t.content = &need(f, "content", at);
    t.at = at;
    return t;
  }

  // ---- formats ----

  ExprId end_of(const End& end) {
    if (end.output) return g_.empty();
    std::vector<ExprId> alts;
    for (const auto& s : end.strings) alts.push_back(g_.literal(s));
    return g_.alt(std::move(alts));
  }

  // begin, the content up to one of the ends, that end.
  ExprId tag(const TagItem& t, int depth) {
    const End end{false, t.ends};
    ExprId content;
    if (t.legacy) {
      content = g_.seq({schema(*t.content, join(t.at, "schema")), end_of(end)});
    } else {
      content = ended(*t.content, end, join(t.at, "content"), depth + 1);
    }
    return g_.seq({g_.literal(t.begin), content});
  }

  ExprId schema(const ojson& s, const std::string& at) {
    if (!s.is_object() && !s.is_boolean()) fail("'{}' must be a JSON Schema", at);
    try {
      return json_.value(s);
    } catch (const Error& e) {
      fail("'{}': {}", at, e.what());
    }
  }

  // A format that ends by itself.
  ExprId bounded(const ojson& f, const std::string& at, int depth) {
    const std::string type = type_of(f, at, depth);
    if (type == "const_string") {
      only(f, {"type", "value"}, at);
      return g_.literal(string_field(f, "value", at));
    }
    if (type == "json_schema") {
      only(f, {"type", "json_schema", "style", "any_order"}, at);
      if (f.contains("style") && !f["style"].is_null() && f["style"] != "json")
        fail("'{}' {} is not supported (only \"json\")", join(at, "style"), f["style"].dump());
      if (bool_field(f, "any_order", at)) fail("'{}' true is not supported", join(at, "any_order"));
      return schema(need(f, "json_schema", at), join(at, "json_schema"));
    }
    if (type == "regex") {
      only(f, {"type", "pattern"}, at);
      try {
        return compile_regex(g_, string_field(f, "pattern", at), RegexOptions{});
      } catch (const Error& e) {
        fail("'{}': {}", join(at, "pattern"), e.what());
      }
    }
    if (type == "grammar") {
      only(f, {"type", "grammar"}, at);
      const std::string text = string_field(f, "grammar", at);
      try {
        return import(gbnf_grammar_without_tokens(text));
      } catch (const Error& e) {
        fail("'{}': {}", join(at, "grammar"), e.what());
      }
    }
    if (type == "sequence" || type == "or") {
      std::vector<ExprId> parts = each_element(f, at, [&](const ojson& e, const std::string& p, bool) {
        return bounded(e, p, depth + 1);
      });
      return type == "or" ? g_.alt(std::move(parts)) : g_.seq(std::move(parts));
    }
    if (type == "optional" || type == "plus" || type == "star" || type == "repeat") {
      if (type == "repeat") {
        only(f, {"type", "content", "min", "max"}, at);
      } else {
        only(f, {"type", "content"}, at);
      }
      const ExprId kid = bounded(need(f, "content", at), join(at, "content"), depth + 1);
      if (type == "optional") return g_.optional(kid);
      if (type == "plus") return g_.plus(kid);
      if (type == "star") return g_.star(kid);
      const ojson& lo = need(f, "min", at);
      const ojson& hi = need(f, "max", at);
      if (!lo.is_number_integer() || lo.get<int64_t>() < 0 || lo.get<int64_t>() > Grammar::kMaxRepeat)
        fail("'{}' must be an integer in [0, {}]", join(at, "min"), Grammar::kMaxRepeat);
      if (!hi.is_number_integer() || hi.get<int64_t>() < -1 || hi.get<int64_t>() > Grammar::kMaxRepeat ||
          (hi.get<int64_t>() >= 0 && hi.get<int64_t>() < lo.get<int64_t>()))
        fail("'{}' must be -1 (unbounded) or an integer in [min, {}]", join(at, "max"), Grammar::kMaxRepeat);
      return g_.repeat(kid, int32_t(lo.get<int64_t>()), int32_t(hi.get<int64_t>()));
    }
    if (type == "tag") return tag(read_tag(f, at, depth), depth);
    if (type == "tags_with_separator") {
      only(f, {"type", "tags", "separator", "at_least_one", "stop_after_first"}, at);
      const ojson& tags = elements(f, "tags", at);
      std::vector<ExprId> alts;
      for (size_t i = 0; i < tags.size(); ++i)
        alts.push_back(tag(read_tag(tags[i], fmt::format("{}.tags[{}]", at, i), depth + 1), depth + 1));
      const ExprId one = as_rule(g_.alt(std::move(alts)));
      const ExprId sep = g_.literal(string_field(f, "separator", at));
      const ExprId list =
          bool_field(f, "stop_after_first", at) ? one : g_.seq({one, g_.star(g_.seq({sep, one}))});
      return bool_field(f, "at_least_one", at) ? list : g_.optional(list);
    }
    if (type == "any_text" || type == "triggered_tags")
      fail("'{}' ({}) has no end of its own: it must come last, in the whole output or in a tag's content", at,
           type);
    unknown(type, at);
  }

  [[noreturn]] static void unknown(const std::string& type, const std::string& at) {
    static const std::set<std::string> known_elsewhere = {"token", "exclude_token", "any_tokens",
                                                          "token_triggered_tags", "token_dispatch", "dispatch",
                                                          "qwen_xml_parameter"};
    if (known_elsewhere.count(type)) fail("'{}': format type '{}' is not supported", at, type);
    fail("'{}': unknown format type '{}'", at, type);
  }

  // The format, then `end`: unlimited formats stop at the end instead of running on.
  ExprId ended(const ojson& f, const End& end, const std::string& at, int depth) {
    const std::string type = type_of(f, at, depth);
    if (type == "any_text") {
      only(f, {"type", "excludes", "max_tokens", "max_chars"}, at);
      for (const char* budget : {"max_tokens", "max_chars"})
        if (f.contains(budget) && !f[budget].is_null()) fail("'{}' is not supported", join(at, budget));
      std::vector<TextPattern> pats;
      if (f.contains("excludes") && !f["excludes"].is_null())
        for (const auto& s : strings(f["excludes"], join(at, "excludes"), true)) pats.push_back({s, -1, "exclude"});
      const int32_t start = new_rule();
      scan_text(g_, start, with_end(std::move(pats), end, at), end.output, at);
      return g_.ref(start);
    }
    if (type == "triggered_tags") return triggered(f, end, at, depth);
    if (type == "sequence") {  // only the last element runs up to the end
      return g_.seq(each_element(f, at, [&](const ojson& e, const std::string& p, bool last) {
        return last ? ended(e, end, p, depth + 1) : bounded(e, p, depth + 1);
      }));
    }
    if (type == "or") {
      return g_.alt(each_element(f, at, [&](const ojson& e, const std::string& p, bool) {
        return ended(e, end, p, depth + 1);
      }));
    }
    return g_.seq({bounded(f, at, depth), end_of(end)});
  }

  // Free text dispatching to tags at each trigger (xgrammar's triggered_tags); the legacy shape too.
  ExprId triggered(const ojson& f, const End& end, const std::string& at, int depth) {
    only(f, {"type", "triggers", "tags", "at_least_one", "stop_after_first", "excludes"}, at);
    const std::vector<std::string> triggers = strings(need(f, "triggers", at), join(at, "triggers"), false);
    const ojson& tags = elements(f, "tags", at);
    std::vector<TagItem> items;
    for (size_t i = 0; i < tags.size(); ++i)
      items.push_back(read_tag(tags[i], fmt::format("{}.tags[{}]", at, i), depth + 1));
    std::vector<std::string> excludes;
    if (f.contains("excludes") && !f["excludes"].is_null())
      excludes = strings(f["excludes"], join(at, "excludes"), true);
    return dispatch(triggers, items, excludes, bool_field(f, "at_least_one", at),
                    bool_field(f, "stop_after_first", at), end, at, depth);
  }

  ExprId legacy(const ojson& spec) {
    only(spec, {"type", "structures", "triggers"}, "");
    const std::vector<std::string> triggers = strings(need(spec, "triggers", ""), "triggers", false);
    const ojson& st = need(spec, "structures", "");
    if (!st.is_array() || st.empty()) fail("'structures' must be a non-empty array");
    std::vector<TagItem> items;
    for (size_t i = 0; i < st.size(); ++i) {
      const std::string at = fmt::format("structures[{}]", i);
      if (!st[i].is_object()) fail("'{}' must be an object with 'begin', 'schema' and 'end'", at);
      only(st[i], {"begin", "schema", "end"}, at);
      TagItem t;
      t.begin = string_field(st[i], "begin", at);
      t.ends = {string_field(st[i], "end", at)};
      t.content = &need(st[i], "schema", at);
      t.at = at;
      t.legacy = true;
      items.push_back(std::move(t));
    }
    return dispatch(triggers, items, {}, false, false, End{}, "", 0);
  }

  ExprId dispatch(const std::vector<std::string>& triggers, const std::vector<TagItem>& items,
                  const std::vector<std::string>& excludes, bool at_least_one, bool stop_after_first, const End& end,
                  const std::string& at, int depth) {
    // Each tag after its trigger (its begin's remainder, content, end), grouped by trigger.
    std::vector<std::vector<ExprId>> rest(triggers.size());
    for (const auto& t : items) {
      int which = -1;
      for (size_t k = 0; k < triggers.size(); ++k) {
        if (t.begin.compare(0, triggers[k].size(), triggers[k]) != 0) continue;
        if (which >= 0)
          fail("'{}' {} starts with two triggers, {} and {}", join(t.at, "begin"), json_dumped(t.begin),
               json_dumped(triggers[size_t(which)]), json_dumped(triggers[k]));
        which = int(k);
      }
      if (which < 0) fail("'{}' {} does not start with any of the triggers", join(t.at, "begin"), json_dumped(t.begin));
      TagItem tail = t;
      tail.begin = t.begin.substr(triggers[size_t(which)].size());
      rest[size_t(which)].push_back(tag(tail, depth));
    }
    std::vector<int32_t> rest_rule;
    for (size_t k = 0; k < triggers.size(); ++k) {
      if (rest[k].empty()) fail("'{}' trigger {} begins no tag", join(at, "triggers"), json_dumped(triggers[k]));
      rest_rule.push_back(new_rule());
      g_.set_body(rest_rule.back(), g_.alt(std::move(rest[k])));
    }
    // After a tag: the free text again, or (stop_after_first) the end.
    const int32_t loop = new_rule();
    const ExprId next = stop_after_first ? end_of(end) : g_.ref(loop);
    std::vector<TextPattern> pats;
    for (size_t k = 0; k < triggers.size(); ++k)
      pats.push_back({triggers[k], g_.seq({g_.ref(rest_rule[k]), next}), "trigger"});
    for (const auto& s : excludes) pats.push_back({s, -1, "exclude"});
    scan_text(g_, loop, with_end(std::move(pats), end, at), end.output, at);
    if (!at_least_one) return g_.ref(loop);
    // At least one: the output opens with a tag (no free text before it).
    std::vector<ExprId> first;
    for (size_t k = 0; k < triggers.size(); ++k)
      first.push_back(g_.seq({g_.literal(triggers[k]), g_.ref(rest_rule[k])}));
    return g_.seq({g_.alt(std::move(first)), next});
  }

  std::vector<TextPattern> with_end(std::vector<TextPattern> pats, const End& end, const std::string& at) {
    if (end.output) return pats;
    for (const auto& st : end.strings) {
      if (st.empty()) fail("'{}' ends at an empty end string, so its free text could never end", at);
      pats.push_back({st, g_.empty(), "end"});
    }
    return pats;
  }

  // ---- grammar plumbing ----

  int32_t new_rule() { return g_.add_rule(fmt::format("(structural tag {})", rules_++)); }

  ExprId as_rule(ExprId e) {
    const int32_t r = new_rule();
    g_.set_body(r, e);
    return g_.ref(r);
  }

  // Copies another grammar's rules in (renamed apart); returns a reference to its root.
  ExprId import(const Grammar& o) {
    const int32_t first = int32_t(g_.num_rules());
    const int id = imports_++;
    for (size_t r = 0; r < o.num_rules(); ++r)
      g_.add_rule(fmt::format("(grammar {} {})", id, o.rule_name(int32_t(r))));
    std::map<ExprId, ExprId> done;
    std::function<ExprId(ExprId)> copy = [&](ExprId e) -> ExprId {
      if (auto it = done.find(e); it != done.end()) return it->second;
      const Expr& x = o.expr(e);
      ExprId out;
      std::vector<ExprId> kids;
      for (ExprId k : x.kids) kids.push_back(copy(k));
      switch (x.kind) {
        case ExprKind::kBytes: out = g_.bytes(x.bytes); break;
        case ExprKind::kSeq: out = g_.seq(std::move(kids)); break;
        case ExprKind::kAlt: out = g_.alt(std::move(kids)); break;
        case ExprKind::kRepeat: out = g_.repeat(kids.at(0), x.min, x.max); break;
        case ExprKind::kRef: out = g_.ref(first + x.rule); break;
        default: fail("grammar: unknown expression kind");
      }
      done.emplace(e, out);
      return out;
    };
    for (size_t r = 0; r < o.num_rules(); ++r) g_.set_body(first + int32_t(r), copy(o.rule_body(int32_t(r))));
    return g_.ref(first + o.root());
  }

  Grammar& g_;
  JsonSchemaCompiler json_;
  int rules_ = 0;
  int imports_ = 0;
};

}  // namespace

Grammar structural_tag_grammar(std::string_view spec, const JsonSchemaOptions& opt) {
  ojson doc;
  try {
    doc = ojson::parse(spec);
  } catch (const ojson::exception& e) {
    fail("the structural tag is not valid JSON: {}", e.what());
  }
  Grammar g;
  const int32_t root = g.add_rule("root");
  Compiler c(g, opt);
  g.set_body(root, c.root(doc));
  g.set_root(root);
  return g;
}

}  // namespace dpserve::constrain
