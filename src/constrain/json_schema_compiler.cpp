#include "constrain/json_schema_compiler.h"

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "constrain/automaton.h"
#include "constrain/json_number.h"
#include "constrain/json_schema_merge.h"
#include "constrain/json_string_format.h"
#include "constrain/regex_compiler.h"
#include "constrain/regular_intersect.h"
#include "core/check.h"

namespace dpserve::constrain {
namespace {

using Schema = nlohmann::ordered_json;

constexpr int kMaxSchemaDepth = 128;
// multipleOf k is walked as the residues mod k of the digits read so far (k states).
constexpr int64_t kMaxMultipleOf = 10000;
// Past 2^53 a validator's double no longer holds the integer written, nor its remainder.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// Validation keywords no grammar here can enforce.
const std::set<std::string>& unsupported_keywords() {
  static const std::set<std::string> k = {"not", "if", "then", "else", "contains", "minContains", "maxContains",
                                          "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
                                          "$recursiveRef"};
  return k;
}

[[noreturn]] void unsupported(const std::string& what, const std::string& path) {
  fail("JSON schema: {} is not supported (at {})", what, path);
}

[[noreturn]] void invalid(const std::string& what, const std::string& path) {
  fail("JSON schema: {} (at {})", what, path);
}

// One character of a JSON string: a character JSON allows raw, or an escape (no lone surrogates:
// validators count a \uD83D\uDE00 pair as one character, we would count two).
ExprId json_string_char(Grammar& g) {
  CodepointSet special = CodepointSet::of(0, 0x1F);
  special.add('"');
  special.add('\\');
  ByteSet simple;
  for (char c : std::string("\"\\/bfnrt")) simple.set(uint8_t(c));
  ByteSet hex = ByteSet::range('0', '9') | ByteSet::range('a', 'f') | ByteSet::range('A', 'F');
  ByteSet hex_no_d = ByteSet::range('0', '9') | ByteSet::range('a', 'c') | ByteSet::range('A', 'C') |
                     ByteSet::range('e', 'f') | ByteSet::range('E', 'F');
  const ExprId u = g.seq({g.literal("u"),
                           g.alt({g.seq({g.bytes(hex_no_d), g.repeat(g.bytes(hex), 3, 3)}),
                                   g.seq({g.bytes(ByteSet::of('d') | ByteSet::of('D')), g.bytes(ByteSet::range('0', '7')),
                                           g.repeat(g.bytes(hex), 2, 2)})})});
  const ExprId escape = g.seq({g.literal("\\"), g.alt({g.bytes(simple), u})});
  return g.alt({g.chars(special.complement()), escape});
}

bool constrains(const Schema& s) {
  for (const auto& [k, v] : s.items())
    if (!is_annotation_keyword(k)) return true;
  return false;
}

Schema without(const Schema& s, const std::string& key) {
  Schema out = s;
  out.erase(key);
  return out;
}

std::vector<std::string> types_of(const Schema& s, const std::string& path) {
  std::vector<std::string> t;
  const Schema& ty = s["type"];
  if (ty.is_string()) {
    t.push_back(ty.get<std::string>());
  } else if (ty.is_array() && !ty.empty()) {
    for (const auto& x : ty) {
      if (!x.is_string()) invalid("'type' must be a string or an array of strings", path);
      t.push_back(x.get<std::string>());
    }
  } else {
    invalid("'type' must be a string or a non-empty array of strings", path);
  }
  return t;
}

bool value_has_type(const Schema& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer")
    return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  return false;
}

std::optional<int64_t> count_keyword(const Schema& s, const char* k, const std::string& path) {
  if (!s.contains(k)) return std::nullopt;
  const Schema& v = s[k];
  if (!v.is_number() || v.get<double>() < 0 || v.get<double>() != std::floor(v.get<double>()))
    invalid(fmt::format("'{}' must be a non-negative integer", k), path);
  return int64_t(std::min(v.get<double>(), 1e15));
}

std::optional<double> number_keyword(const Schema& s, const char* k, const std::string& path) {
  if (!s.contains(k) || s[k].is_boolean()) return std::nullopt;
  if (!s[k].is_number()) invalid(fmt::format("'{}' must be a number", k), path);
  return s[k].get<double>();
}

// The content of a key for an additional property: any string written without escapes except the declared names
// (escapes could spell a declared name differently, so they are left out).
ExprId extra_key_content(Grammar& g_, const std::vector<std::string>& declared) {
  CodepointSet special = CodepointSet::of(0, 0x1F);
  special.add('"');
  special.add('\\');
  const CodepointSet plain = special.complement();
  struct Node {
    std::map<uint32_t, int> kids;
    bool end = false;
  };
  std::vector<Node> trie(1);
  for (const auto& name : declared) {
    std::vector<uint32_t> cps;
    bool ok = true;
    for (size_t i = 0; i < name.size() && ok;) {
      const auto c0 = uint8_t(name[i]);
      const int n = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : 4;
      uint32_t cp = n == 1 ? c0 : n == 2 ? (c0 & 0x1F) : n == 3 ? (c0 & 0x0F) : (c0 & 0x07);
      for (int k = 1; k < n && i + size_t(k) < name.size(); ++k) cp = (cp << 6) | (uint8_t(name[i + size_t(k)]) & 0x3F);
      ok = plain.contains(cp);
      cps.push_back(cp);
      i += size_t(n);
    }
    if (!ok) continue;  // cannot be written without escapes: no clash possible
    int cur = 0;
    for (uint32_t cp : cps) {
      auto it = trie[size_t(cur)].kids.find(cp);
      if (it == trie[size_t(cur)].kids.end()) {
        trie.push_back(Node{});
        it = trie[size_t(cur)].kids.emplace(cp, int(trie.size() - 1)).first;
      }
      cur = it->second;
    }
    trie[size_t(cur)].end = true;
  }
  const ExprId any_plain = g_.star(g_.chars(plain));
  std::function<ExprId(int)> build = [&](int node) -> ExprId {
    const Node& n = trie[size_t(node)];
    std::vector<ExprId> alts;
    if (!n.end) alts.push_back(g_.empty());
    CodepointSet other = plain;
    for (const auto& [cp, child] : n.kids) {
      alts.push_back(g_.seq({g_.chars(CodepointSet::of(cp, cp)), build(child)}));
      other = other.intersect(CodepointSet::of(cp, cp).complement());
    }
    alts.push_back(g_.seq({g_.chars(other), any_plain}));
    return g_.alt(std::move(alts));
  };
  return build(0);
}

}  // namespace

ExprId JsonSchemaCompiler::extra_key(const std::vector<std::string>& declared) {
  return g_.seq({g_.literal("\""), extra_key_content(g_, declared), g_.literal("\"")});
}

JsonSchemaCompiler::JsonSchemaCompiler(Grammar& g, JsonSchemaOptions opt) : g_(g), opt_(opt) {}

ExprId JsonSchemaCompiler::ws() {
  if (ws_ < 0) {
    if (opt_.whitespace.empty()) {
      ws_ = g_.empty();
    } else {
      // Whitespace separates JSON tokens: a pattern that could match anything else would let the
      // output stop being JSON.
      auto probe = Automaton::build(regex_grammar(opt_.whitespace));
      for (uint32_t r = 0; r < probe->num_rules(); ++r)
        for (int32_t st = 0; st < probe->rule(r).num_states(); ++st)
          for (int b = 0; b < 256; ++b)
            if (b != ' ' && b != '\t' && b != '\n' && b != '\r' && probe->rule(r).step(st, uint8_t(b)) >= 0)
              fail("the JSON whitespace pattern '{}' matches more than spaces, tabs and line breaks", opt_.whitespace);
      ws_ = compile_regex(g_, opt_.whitespace, RegexOptions{});
    }
  }
  return ws_;
}

ExprId JsonSchemaCompiler::json_string_literal(std::string_view s) { return g_.literal(Schema(std::string(s)).dump()); }

ExprId JsonSchemaCompiler::literal_value(const Schema& v) { return g_.literal(v.dump()); }

ExprId JsonSchemaCompiler::as_rule(ExprId e) {
  const int32_t r = g_.add_rule(fmt::format("value{}", g_.num_rules()));
  g_.set_body(r, e);
  return g_.ref(r);
}

ExprId JsonSchemaCompiler::string_char() { return json_string_char(g_); }

ExprId JsonSchemaCompiler::any_value() {
  if (any_rule_ < 0) {
    any_rule_ = g_.add_rule("json_value");
    const ExprId v = g_.ref(any_rule_);
    const ExprId str = g_.seq({g_.literal("\""), g_.star(string_char()), g_.literal("\"")});
    const ExprId comma = g_.seq({ws(), g_.literal(","), ws()});
    const ExprId member = g_.seq({str, ws(), g_.literal(":"), ws(), v});
    const ExprId obj = g_.seq({g_.literal("{"), ws(), g_.optional(g_.seq({member, g_.star(g_.seq({comma, member}))})),
                               ws(), g_.literal("}")});
    const ExprId arr = g_.seq(
        {g_.literal("["), ws(), g_.optional(g_.seq({v, g_.star(g_.seq({comma, v}))})), ws(), g_.literal("]")});
    const ExprId num = json_number(g_, std::nullopt, std::nullopt);
    g_.set_body(any_rule_, g_.alt({obj, arr, str, num, g_.literal("true"), g_.literal("false"), g_.literal("null")}));
  }
  return g_.ref(any_rule_);
}

ExprId JsonSchemaCompiler::any_object() {
  Schema s = Schema::object();
  s["type"] = "object";
  s["additionalProperties"] = true;
  return value(s);
}

ExprId JsonSchemaCompiler::value(const Schema& schema) {
  docs_.push_back(schema);
  return compile(docs_.back(), "#", 0);
}

ExprId JsonSchemaCompiler::compile_ref(const std::string& pointer, const std::string& path, int depth) {
  const auto key = std::make_pair(docs_.size() - 1, pointer);
  if (auto it = ref_rules_.find(key); it != ref_rules_.end()) return g_.ref(it->second);
  const Schema& target = resolve_pointer(doc(), pointer);
  const int32_t r = g_.add_rule(fmt::format("ref{}:{}", docs_.size() - 1, pointer));
  ref_rules_[key] = r;
  g_.set_body(r, compile(target, pointer, depth + 1));
  return g_.ref(r);
}

ExprId JsonSchemaCompiler::compile(const Schema& s, const std::string& path, int depth) {
  if (depth > kMaxSchemaDepth) invalid("the schema nests too deeply", path);
  if (s.is_boolean()) {
    if (s.get<bool>()) return any_value();
    invalid("the schema 'false' accepts nothing", path);
  }
  if (!s.is_object()) invalid("a schema must be an object or a boolean", path);
  for (const auto& [k, v] : s.items())
    if (unsupported_keywords().count(k)) unsupported(fmt::format("'{}'", k), path);
  if (s.contains("patternProperties") && !(s["patternProperties"].is_object() && s["patternProperties"].empty()))
    unsupported("'patternProperties'", path);
  for (const char* k : {"dependentRequired", "dependencies", "dependentSchemas"})
    if (s.contains(k) && !(s[k].is_object() && s[k].empty())) unsupported(fmt::format("'{}'", k), path);
  if (s.contains("propertyNames") && s["propertyNames"] == Schema(false)) unsupported("'propertyNames' false", path);

  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) invalid("'$ref' must be a string", path);
    const std::string ptr = s["$ref"].get<std::string>();
    if (!constrains(without(s, "$ref"))) return compile_ref(ptr, path, depth);
    // $ref beside other keywords: both apply.
    return compile(merge_schemas(doc(), resolve_pointer(doc(), ptr), without(s, "$ref")), path, depth + 1);
  }
  if (s.contains("allOf")) {
    if (!s["allOf"].is_array() || s["allOf"].empty()) invalid("'allOf' must be a non-empty array", path);
    Schema merged = without(s, "allOf");
    for (const auto& sub : s["allOf"]) {
      try {
        merged = merge_schemas(doc(), merged, sub);
      } catch (const Error& e) {
        fail("{} (at {})", e.what(), path);
      }
    }
    return compile(merged, path, depth + 1);
  }
  if (s.contains("anyOf") && s.contains("oneOf")) unsupported("'anyOf' together with 'oneOf'", path);
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!s.contains(key)) continue;
    if (!s[key].is_array() || s[key].empty()) invalid(fmt::format("'{}' must be a non-empty array", key), path);
    const Schema base = without(s, key);
    const bool merge = constrains(base);
    std::vector<Schema> branches;
    for (const auto& sub : s[key]) branches.push_back(merge ? merge_schemas(doc(), base, sub) : sub);
    if (std::string(key) == "oneOf") {
      for (size_t i = 0; i < branches.size(); ++i)
        for (size_t j = i + 1; j < branches.size(); ++j)
          if (!provably_disjoint(doc(), branches[i], branches[j]))
            fail("JSON schema: 'oneOf' branches {} and {} may both match one value, which a grammar cannot rule "
                 "out; use 'anyOf' or make them exclusive, e.g. by a required property with different 'const' "
                 "values (at {})",
                 i, j, path);
    }
    std::vector<ExprId> alts;
    for (size_t i = 0; i < branches.size(); ++i)
      alts.push_back(compile(branches[i], fmt::format("{}/{}/{}", path, key, i), depth + 1));
    return g_.alt(std::move(alts));
  }

  if (s.contains("multipleOf")) {
    // A decimal step is left out: validators divide doubles (ajv and Python's jsonschema both find
    // 0.07 no multiple of 0.01), so what the grammar would write is not what they accept.
    const Schema& m = s["multipleOf"];
    if (!(m.is_number() && m.get<double>() >= 1 && m.get<double>() == std::floor(m.get<double>())))
      unsupported("'multipleOf' other than a positive integer", path);
    if (m.get<double>() > double(kMaxMultipleOf)) unsupported(fmt::format("'multipleOf' above {}", kMaxMultipleOf), path);
  }
  if (s.contains("uniqueItems") && s["uniqueItems"] == Schema(true)) {
    const auto mx = count_keyword(s, "maxItems", path);
    if (!mx || *mx > 1) unsupported("'uniqueItems'", path);
  }

  std::vector<std::string> types;
  if (s.contains("type")) types = types_of(s, path);
  if (s.contains("const") || s.contains("enum")) {
    std::vector<Schema> values;
    if (s.contains("const")) {
      values.push_back(s["const"]);
      if (s.contains("enum")) {
        bool in = false;
        for (const auto& v : s["enum"]) in = in || v == s["const"];
        if (!in) invalid("'const' is not one of the 'enum' values", path);
      }
    } else {
      if (!s["enum"].is_array() || s["enum"].empty()) invalid("'enum' must be a non-empty array", path);
      values.assign(s["enum"].begin(), s["enum"].end());
    }
    std::vector<ExprId> alts;
    for (const auto& v : values) {
      bool ok = types.empty();
      for (const auto& t : types) ok = ok || value_has_type(v, t);
      // multipleOf applies to numbers (checked above to be a positive integer).
      if (ok && v.is_number() && s.contains("multipleOf"))
        ok = v.get<double>() == std::floor(v.get<double>()) && std::fmod(v.get<double>(), s["multipleOf"].get<double>()) == 0;
      if (ok) alts.push_back(literal_value(v));
    }
    if (alts.empty()) invalid("no 'enum' / 'const' value has the schema's 'type'", path);
    return g_.alt(std::move(alts));
  }
  if (types.empty()) {
    auto has_any = [&](std::initializer_list<const char*> ks) {
      for (const char* k : ks)
        if (s.contains(k)) return true;
      return false;
    };
    if (has_any({"properties", "required", "additionalProperties", "minProperties", "maxProperties"}))
      types.push_back("object");
    if (has_any({"items", "prefixItems", "additionalItems", "minItems", "maxItems"})) types.push_back("array");
    if (has_any({"minLength", "maxLength", "pattern"})) types.push_back("string");
    if (has_any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) types.push_back("number");
    if (types.empty()) return any_value();
  }
  std::vector<ExprId> alts;
  for (const auto& t : types) alts.push_back(compile_type(s, t, path, depth));
  return g_.alt(std::move(alts));
}

ExprId JsonSchemaCompiler::compile_type(const Schema& s, const std::string& t, const std::string& path, int depth) {
  if (t == "null") return g_.literal("null");
  if (t == "boolean") return g_.alt({g_.literal("true"), g_.literal("false")});
  if (t == "object") return compile_object(s, path, depth);
  if (t == "array") return compile_array(s, path, depth);
  if (t == "string") return compile_string(s, path);
  if (t == "number") return compile_number(s, s.contains("multipleOf"), path);
  if (t == "integer") return compile_number(s, true, path);
  invalid(fmt::format("unknown type '{}'", t), path);
}

ExprId JsonSchemaCompiler::compile_number(const Schema& s, bool integer, const std::string& path) {
  std::optional<NumberBound> lo, hi;
  auto tighten_lo = [&](double v, bool excl) {
    if (!lo || v > lo->value || (v == lo->value && excl)) lo = NumberBound{v, excl};
  };
  auto tighten_hi = [&](double v, bool excl) {
    if (!hi || v < hi->value || (v == hi->value && excl)) hi = NumberBound{v, excl};
  };
  if (auto v = number_keyword(s, "minimum", path))
    tighten_lo(*v, s.contains("exclusiveMinimum") && s["exclusiveMinimum"] == Schema(true));
  if (auto v = number_keyword(s, "maximum", path))
    tighten_hi(*v, s.contains("exclusiveMaximum") && s["exclusiveMaximum"] == Schema(true));
  if (auto v = number_keyword(s, "exclusiveMinimum", path)) tighten_lo(*v, true);
  if (auto v = number_keyword(s, "exclusiveMaximum", path)) tighten_hi(*v, true);
  if (s.contains("format") && s["format"] == "int32") {
    integer = true;
    tighten_lo(-2147483648.0, false);
    tighten_hi(2147483647.0, false);
  }
  const int64_t k = s.contains("multipleOf") ? int64_t(s["multipleOf"].get<double>()) : 1;
  try {
    if (k <= 1) return integer ? json_integer_bounded(g_, lo, hi) : json_number(g_, lo, hi);
    // Multiples of k: integers within the bounds (and within 2^53: a lower maximum only narrows
    // the outputs), intersected with the decimal strings whose value is 0 mod k.
    tighten_lo(-kMaxSafeInteger, false);
    tighten_hi(kMaxSafeInteger, false);
    Grammar bounded;
    const int32_t root = bounded.add_rule("root");
    bounded.set_body(root, json_integer_bounded(bounded, lo, hi));
    bounded.set_root(root);
    // States: 0 start, 1 after '-', 2 + r: digits read, their value r mod k.
    ByteDfa mod{0,
                [k](int32_t st, uint8_t b) -> int32_t {
                  if (st == 0 && b == '-') return 1;
                  if (b < '0' || b > '9') return -1;
                  const int64_t r = st >= 2 ? st - 2 : 0;
                  return int32_t(2 + (r * 10 + (b - '0')) % k);
                },
                [](int32_t st) { return st == 2; }};
    return intersect_regular(g_, {&bounded}, {mod}, fmt::format("multiple{}", g_.num_rules()));
  } catch (const Error& e) {
    if (k > 1 && std::string_view(e.what()).rfind("no string", 0) == 0)
      fail("JSON schema: no multiple of {} lies within the bounds (at {})", k, path);
    if (k > 1) fail("JSON schema: 'multipleOf' {}: {} (at {})", k, e.what(), path);
    fail("JSON schema: {} (at {})", e.what(), path);
  }
}

// A string under several of 'pattern', 'format', 'minLength' / 'maxLength' (zod writes
// {"format": "email", "pattern": ...}): every one must hold, so each is compiled alone and the string
// content is their intersection. `key_exclude`: an object key, which is also written without escapes
// and is none of these names (see extra_key).
ExprId JsonSchemaCompiler::string_intersection(const std::vector<std::string>& patterns, const std::string& format,
                                               std::optional<int64_t> min_len, std::optional<int64_t> max_len,
                                               const std::string& path, const std::vector<std::string>* key_exclude) {
  std::vector<Grammar> parts;
  std::vector<std::string> names;
  auto part = [&](const std::string& what, const std::function<ExprId(Grammar&)>& build) {
    Grammar& p = parts.emplace_back();
    const int32_t root = p.add_rule("root");
    try {
      p.set_body(root, build(p));
    } catch (const Error& e) {
      if (std::string_view(e.what()).rfind("JSON schema", 0) == 0) throw;
      fail("JSON schema: {} (at {})", e.what(), path);
    }
    p.set_root(root);
    names.push_back(what);
  };
  for (const auto& pattern : patterns)
    part("'pattern'", [&](Grammar& g) { return compile_regex(g, pattern, RegexOptions{true, true}); });
  if (!format.empty()) {
    const auto p = json_string_format_pattern(format);
    if (!p) unsupported(fmt::format("format '{}'", format), path);
    part(fmt::format("format '{}'", format), [&](Grammar& g) { return compile_regex(g, *p, RegexOptions{false, true}); });
  }
  if (min_len || max_len) {
    const int64_t lo = min_len.value_or(0);
    if (lo > opt_.max_repeat) unsupported(fmt::format("'minLength' above {}", opt_.max_repeat), path);
    // A lower maximum than asked only narrows the outputs (as for a plain string).
    const int64_t hi = max_len ? std::min<int64_t>(*max_len, opt_.max_repeat) : -1;
    part("'minLength' / 'maxLength'",
         [&](Grammar& g) { return g.repeat(json_string_char(g), int32_t(lo), int32_t(hi)); });
  }
  if (key_exclude) part("the other keys", [&](Grammar& g) { return extra_key_content(g, *key_exclude); });
  if (parts.size() == 1 && !key_exclude) {
    // One part alone: compiled straight into the grammar.
    if (patterns.empty() && format.empty())
      return g_.repeat(string_char(), int32_t(min_len.value_or(0)),
                       max_len ? int32_t(std::min<int64_t>(*max_len, opt_.max_repeat)) : -1);
    try {
      if (!patterns.empty()) return compile_regex(g_, patterns[0], RegexOptions{true, true});
      if (!format.empty()) return compile_regex(g_, *json_string_format_pattern(format), RegexOptions{false, true});
    } catch (const Error& e) {
      if (std::string_view(e.what()).rfind("JSON schema", 0) == 0) throw;
      fail("JSON schema: {} (at {})", e.what(), path);
    }
  }
  std::vector<const Grammar*> ptrs;
  for (const Grammar& p : parts) ptrs.push_back(&p);
  try {
    return intersect_regular(g_, ptrs, fmt::format("string{}", g_.num_rules()));
  } catch (const Error& e) {
    std::string all;
    for (size_t i = 0; i < names.size(); ++i) all += (i ? (i + 1 == names.size() ? " and " : ", ") : "") + names[i];
    fail("JSON schema: {}: {} (at {})", all, e.what(), path);
  }
}

// The content of a string schema (between the quotes), or -1 when it has no 'pattern', 'format'
// or length (any string).
ExprId JsonSchemaCompiler::string_content(const Schema& s, const std::string& path,
                                          const std::vector<std::string>* key_exclude) {
  const auto min_len = count_keyword(s, "minLength", path);
  const auto max_len = count_keyword(s, "maxLength", path);
  if (min_len && max_len && *min_len > *max_len) invalid("'minLength' is above 'maxLength'", path);
  std::vector<std::string> patterns;
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) invalid("'pattern' must be a string", path);
    patterns.push_back(s["pattern"].get<std::string>());
  }
  if (s.contains(kMergedPatterns) && s[kMergedPatterns].is_array())
    for (const auto& p : s[kMergedPatterns]) {
      if (!p.is_string()) invalid("'pattern' must be a string", path);
      patterns.push_back(p.get<std::string>());
    }
  std::string format;
  if (s.contains("format")) {
    if (!s["format"].is_string()) invalid("'format' must be a string", path);
    format = s["format"].get<std::string>();
    if (format == "password" || format == "binary") format.clear();  // annotations only
  }
  if (json_string_format_in_pattern(format)) {
    // zod's z.string().startsWith("ab") is {"format": "starts_with", "pattern": "^ab.*"}.
    if (patterns.empty())
      unsupported(fmt::format("format '{}' without a 'pattern' that spells it out", format), path);
    format.clear();
  }
  if (!format.empty())
    std::erase_if(patterns, [&](const std::string& p) { return json_string_format_implies(format, p); });
  if (patterns.empty() && format.empty() && !min_len && !max_len && !key_exclude) return -1;
  return string_intersection(patterns, format, min_len, max_len, path, key_exclude);
}

ExprId JsonSchemaCompiler::compile_string(const Schema& s, const std::string& path) {
  ExprId content = string_content(s, path, nullptr);
  if (content < 0) content = g_.star(string_char());
  return g_.seq({g_.literal("\""), content, g_.literal("\"")});
}

ExprId JsonSchemaCompiler::compile_object(const Schema& s, const std::string& path, int depth) {
  struct Prop {
    std::string name;
    Schema schema;
    bool required = false;
  };
  std::vector<Prop> props;
  if (s.contains("properties")) {
    if (!s["properties"].is_object()) invalid("'properties' must be an object", path);
    for (const auto& [k, v] : s["properties"].items()) props.push_back({k, v, false});
  }
  std::vector<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) invalid("'required' must be an array of strings", path);
    for (const auto& r : s["required"]) {
      if (!r.is_string()) invalid("'required' must be an array of strings", path);
      required.push_back(r.get<std::string>());
    }
  }
  const Schema ap = s.contains("additionalProperties") ? s["additionalProperties"] : Schema(false);
  if (!ap.is_boolean() && !ap.is_object()) invalid("'additionalProperties' must be a boolean or a schema", path);
  bool extras = ap != Schema(false);
  for (const auto& r : required) {
    auto it = std::find_if(props.begin(), props.end(), [&](const Prop& p) { return p.name == r; });
    if (it != props.end()) {
      it->required = true;
      continue;
    }
    if (s.contains("additionalProperties") && !extras)
      invalid(fmt::format("required property '{}' is forbidden by additionalProperties: false", r), path);
    props.push_back({r, extras ? ap : Schema(true), true});
  }
  std::vector<Prop> kept;
  for (auto& p : props) {
    if (p.schema == Schema(false)) {
      if (p.required) invalid(fmt::format("required property '{}' has the schema false", p.name), path);
      continue;
    }
    kept.push_back(std::move(p));
  }
  props = std::move(kept);

  // propertyNames: a list of keys (zod's z.record(z.enum([...]), ...)) or a string schema each key holds.
  std::vector<std::string> key_names;
  bool key_list = false;
  const Schema* key_schema = nullptr;
  const std::string pn_path = path + "/propertyNames";
  if (s.contains("propertyNames") && s["propertyNames"] != Schema(true)) {
    const Schema& pn = s["propertyNames"];
    if (!pn.is_object()) invalid("'propertyNames' must be a schema", path);
    bool string_keywords = false;
    for (const auto& [k, v] : pn.items()) {
      if (is_annotation_keyword(k) || (k == "type" && v == "string") || k == "enum" || k == "const") continue;
      if (k == "pattern" || k == "format" || k == "minLength" || k == "maxLength") {
        string_keywords = true;
        continue;
      }
      unsupported(fmt::format("'{}' in 'propertyNames'", k), pn_path);
    }
    if (pn.contains("enum") || pn.contains("const")) {
      if (string_keywords)
        unsupported("'enum' / 'const' beside 'pattern', 'format' or a length in 'propertyNames'", pn_path);
      if (pn.contains("enum") && !pn["enum"].is_array()) invalid("'enum' must be an array", pn_path);
      for (const auto& v : pn.contains("const") ? Schema::array({pn["const"]}) : pn["enum"]) {
        if (!v.is_string()) continue;  // never a key
        if (pn.contains("const") && pn.contains("enum") &&
            std::find(pn["enum"].begin(), pn["enum"].end(), v) == pn["enum"].end())
          continue;
        key_names.push_back(v.get<std::string>());
      }
      key_list = true;
    } else if (string_keywords) {
      key_schema = &pn;
    }
  }
  if (key_list) {
    // Only the listed keys: the others declared are left out, those not declared are optional
    // properties under additionalProperties.
    std::vector<Prop> listed;
    for (auto& p : props) {
      if (std::find(key_names.begin(), key_names.end(), p.name) != key_names.end()) {
        listed.push_back(std::move(p));
      } else if (p.required) {
        invalid(fmt::format("required property '{}' is not allowed by 'propertyNames'", p.name), path);
      }
    }
    if (extras)
      for (const auto& k : key_names)
        if (std::find_if(listed.begin(), listed.end(), [&](const Prop& p) { return p.name == k; }) == listed.end())
          listed.push_back({k, ap, false});
    props = std::move(listed);
    extras = false;
  } else if (key_schema && !props.empty()) {
    unsupported("'propertyNames' with 'pattern', 'format' or a length beside declared properties", pn_path);
  }
  const int64_t n_required = int64_t(required.size());
  if (auto mn = count_keyword(s, "minProperties", path); mn && *mn > n_required)
    unsupported("'minProperties' above the number of required properties", path);
  if (auto mx = count_keyword(s, "maxProperties", path)) {
    if (*mx < n_required) invalid("'maxProperties' is below the number of required properties", path);
    if (extras || *mx < int64_t(props.size()))
      unsupported("'maxProperties' below the number of properties that may be written", path);
  }

  const ExprId comma = g_.seq({ws(), g_.literal(","), ws()});
  std::vector<ExprId> member;
  std::vector<std::string> names;
  for (const auto& p : props) {
    const ExprId v = compile(p.schema, path + "/properties/" + p.name, depth + 1);
    member.push_back(g_.seq({json_string_literal(p.name), ws(), g_.literal(":"), ws(), v}));
    names.push_back(p.name);
  }
  ExprId extra = -1;
  if (extras) {
    const ExprId v = compile(ap, path + "/additionalProperties", depth + 1);
    const ExprId key = key_schema ? g_.seq({g_.literal("\""), string_content(*key_schema, pn_path, &names), g_.literal("\"")})
                                  : extra_key(names);
    extra = g_.seq({key, ws(), g_.literal(":"), ws(), v});
  }
  // Properties in schema order, the optional ones skippable, commas only between those written:
  // T(i) continues after something was written, S(i) when nothing was written yet.
  const size_t n = props.size();
  std::vector<ExprId> T(n + 1), S(n + 1);
  T[n] = extras ? g_.star(g_.seq({comma, extra})) : g_.empty();
  S[n] = extras ? g_.optional(g_.seq({extra, g_.star(g_.seq({comma, extra}))})) : g_.empty();
  for (size_t i = n; i-- > 0;) {
    const ExprId with_comma = g_.seq({comma, member[i]});
    T[i] = g_.seq({props[i].required ? with_comma : g_.optional(with_comma), T[i + 1]});
    const ExprId first_here = g_.seq({member[i], T[i + 1]});
    S[i] = props[i].required ? first_here : g_.alt({first_here, S[i + 1]});
  }
  return g_.seq({g_.literal("{"), ws(), S[0], ws(), g_.literal("}")});
}

ExprId JsonSchemaCompiler::compile_array(const Schema& s, const std::string& path, int depth) {
  std::vector<Schema> prefix;
  Schema rest = true;
  if (s.contains("prefixItems")) {
    if (!s["prefixItems"].is_array()) invalid("'prefixItems' must be an array", path);
    prefix.assign(s["prefixItems"].begin(), s["prefixItems"].end());
    if (s.contains("items")) rest = s["items"];
  } else if (s.contains("items") && s["items"].is_array()) {
    prefix.assign(s["items"].begin(), s["items"].end());
    if (s.contains("additionalItems")) rest = s["additionalItems"];
  } else if (s.contains("items")) {
    rest = s["items"];
  }
  const int64_t k = int64_t(prefix.size());
  int64_t min = count_keyword(s, "minItems", path).value_or(0);
  std::optional<int64_t> max = count_keyword(s, "maxItems", path);
  const bool rest_false = rest == Schema(false);
  if (rest_false) max = std::min(max.value_or(k), k);
  if (max && min > *max) invalid("'minItems' is above the number of items allowed", path);
  if (min > opt_.max_repeat) unsupported(fmt::format("'minItems' above {}", opt_.max_repeat), path);
  if (max && *max > opt_.max_repeat) max = opt_.max_repeat;

  std::vector<ExprId> items;
  for (int64_t i = 0; i < k; ++i)
    items.push_back(compile(prefix[size_t(i)], fmt::format("{}/prefixItems/{}", path, i), depth + 1));
  // maxItems unrolls the item once per position: as a rule of its own, a large item is built once
  // and called from the other positions (the automaton builder decides by its size).
  const ExprId r = rest_false ? -1 : as_rule(compile(rest, path + "/items", depth + 1));
  const ExprId comma = g_.seq({ws(), g_.literal(","), ws()});
  // tail(i): the items from position i on, each after a comma.
  ExprId tail = -1;
  if (rest_false) {
    tail = g_.empty();
  } else {
    const int64_t lo = std::max<int64_t>(min - std::max<int64_t>(k, 1), 0);
    const int64_t hi = max ? std::max<int64_t>(*max - std::max<int64_t>(k, 1), 0) : -1;
    tail = g_.repeat(g_.seq({comma, r}), int32_t(lo), int32_t(hi));
  }
  for (int64_t i = k - 1; i >= 1; --i) {
    if (max && i >= *max) {
      tail = g_.empty();
      continue;
    }
    const ExprId c = g_.seq({comma, items[size_t(i)], tail});
    tail = i < min ? c : g_.optional(c);
  }
  ExprId body;
  if (max && *max == 0) {
    body = g_.empty();
  } else {
    const ExprId first = g_.seq({k > 0 ? items[0] : r, tail});
    body = min >= 1 ? first : g_.optional(first);
  }
  return g_.seq({g_.literal("["), ws(), body, ws(), g_.literal("]")});
}

Grammar json_schema_grammar(std::string_view schema_text, const JsonSchemaOptions& opt) {
  nlohmann::ordered_json schema;
  try {
    schema = nlohmann::ordered_json::parse(schema_text);
  } catch (const nlohmann::json::exception& e) {
    fail("JSON schema: not valid JSON: {}", e.what());
  }
  // The allOf merge carries extra patterns under kMergedPatterns; a client's own key of that name would be
  // enforced as if merged, where every other x- keyword is an annotation.
  std::vector<const nlohmann::ordered_json*> todo{&schema};
  while (!todo.empty()) {
    const nlohmann::ordered_json* v = todo.back();
    todo.pop_back();
    if (v->is_object()) {
      if (v->contains(kMergedPatterns)) fail("JSON schema: '{}' is reserved for the server's own use", kMergedPatterns);
      for (const auto& [k, x] : v->items()) todo.push_back(&x);
    } else if (v->is_array()) {
      for (const auto& x : *v) todo.push_back(&x);
    }
  }
  Grammar g;
  const int32_t root = g.add_rule("root");
  JsonSchemaCompiler c(g, opt);
  g.set_body(root, c.value(schema));
  g.set_root(root);
  return g;
}

Grammar json_object_grammar(const JsonSchemaOptions& opt) {
  Grammar g;
  const int32_t root = g.add_rule("root");
  JsonSchemaCompiler c(g, opt);
  g.set_body(root, c.any_object());
  g.set_root(root);
  return g;
}

}  // namespace dpserve::constrain
