#include "constrain/json_schema_merge.h"

#include <algorithm>
#include <set>

#include "core/check.h"

namespace dpserve::constrain {
namespace {

const std::set<std::string>& annotation_keywords() {
  static const std::set<std::string> k = {
      "$schema", "$id", "$comment", "$anchor", "$dynamicAnchor", "$vocabulary", "title", "description", "default",
      "examples", "example", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "contentEncoding",
      "contentMediaType", "contentSchema", "discriminator", "nullable", "xml", "externalDocs", "strict"};
  return k;
}

std::string unescape_token(const std::string& t) {
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '~' && i + 1 < t.size() && (t[i + 1] == '0' || t[i + 1] == '1')) {
      out.push_back(t[i + 1] == '0' ? '~' : '/');
      ++i;
    } else if (t[i] == '%' && i + 2 < t.size() && std::isxdigit(uint8_t(t[i + 1])) && std::isxdigit(uint8_t(t[i + 2]))) {
      out.push_back(char(std::stoi(t.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(t[i]);
    }
  }
  return out;
}

// JSON types a schema's validation accepts ("integer" stands inside "number").
std::set<std::string> accepted_types(const Schema& s) {
  static const std::set<std::string> all = {"null", "boolean", "object", "array", "string", "number", "integer"};
  if (!s.is_object()) return all;
  std::set<std::string> t;
  auto value_type = [](const Schema& v) -> std::string {
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "boolean";
    if (v.is_object()) return "object";
    if (v.is_array()) return "array";
    if (v.is_string()) return "string";
    if (v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>())))
      return "integer";
    return "number";
  };
  if (s.contains("const")) return {value_type(s["const"])};
  if (s.contains("enum") && s["enum"].is_array()) {
    for (const auto& v : s["enum"]) t.insert(value_type(v));
    return t;
  }
  if (!s.contains("type")) return all;
  const Schema& ty = s["type"];
  if (ty.is_string()) t.insert(ty.get<std::string>());
  if (ty.is_array())
    for (const auto& x : ty)
      if (x.is_string()) t.insert(x.get<std::string>());
  return t;
}

bool types_overlap(const std::set<std::string>& a, const std::set<std::string>& b) {
  auto norm = [](std::set<std::string> s) {
    if (s.count("integer")) s.insert("number");  // an integer is a number, and we write numbers as integers too
    if (s.count("number")) s.insert("integer");
    return s;
  };
  const auto na = norm(a), nb = norm(b);
  for (const auto& x : na)
    if (nb.count(x)) return true;
  return false;
}

// The const / enum values of a schema, when it has them.
std::optional<std::vector<Schema>> value_set(const Schema& s) {
  if (!s.is_object()) return std::nullopt;
  if (s.contains("const")) return std::vector<Schema>{s["const"]};
  if (s.contains("enum") && s["enum"].is_array()) return std::vector<Schema>(s["enum"].begin(), s["enum"].end());
  return std::nullopt;
}

bool json_equal(const Schema& a, const Schema& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  return a == b;
}

bool values_disjoint(const std::vector<Schema>& a, const std::vector<Schema>& b) {
  for (const auto& x : a)
    for (const auto& y : b)
      if (json_equal(x, y)) return false;
  return true;
}

bool requires_key(const Schema& s, const std::string& k) {
  if (!s.contains("required") || !s["required"].is_array()) return false;
  for (const auto& r : s["required"])
    if (r.is_string() && r.get<std::string>() == k) return true;
  return false;
}

bool forbids_key(const Schema& s, const std::string& k) {
  const bool declared = s.contains("properties") && s["properties"].is_object() && s["properties"].contains(k);
  return !declared && s.contains("additionalProperties") && s["additionalProperties"].is_boolean() &&
         !s["additionalProperties"].get<bool>();
}

const Schema* property(const Schema& s, const std::string& k) {
  if (s.contains("properties") && s["properties"].is_object() && s["properties"].contains(k)) return &s["properties"][k];
  return nullptr;
}

bool disjoint_values(const Schema& root, const Schema& a, const Schema& b, int depth);

// A requires a key that rules out everything B generates and everything B accepts.
bool object_split(const Schema& root, const Schema& a, const Schema& b, int depth) {
  if (!a.contains("required") || !a["required"].is_array()) return false;
  for (const auto& r : a["required"]) {
    if (!r.is_string()) continue;
    const std::string k = r.get<std::string>();
    if (forbids_key(b, k)) return true;
    const Schema* pa = property(a, k);
    const Schema* pb = property(b, k);
    if (pa && pb && disjoint_values(root, deref(root, *pa), deref(root, *pb), depth + 1)) return true;
  }
  return false;
}

bool disjoint_values(const Schema& root, const Schema& a, const Schema& b, int depth) {
  if (depth > 16 || !a.is_object() || !b.is_object()) return false;
  if (!types_overlap(accepted_types(a), accepted_types(b))) return true;
  const auto va = value_set(a), vb = value_set(b);
  if (va && vb && values_disjoint(*va, *vb)) return true;
  const auto ta = accepted_types(a), tb = accepted_types(b);
  if (ta.size() == 1 && tb.size() == 1 && *ta.begin() == "object" && *tb.begin() == "object")
    return object_split(root, a, b, depth) || object_split(root, b, a, depth);
  return false;
}

std::set<std::string> type_set(const Schema& s) {
  std::set<std::string> t;
  if (s.is_string()) t.insert(s.get<std::string>());
  if (s.is_array())
    for (const auto& x : s)
      if (x.is_string()) t.insert(x.get<std::string>());
  return t;
}

}  // namespace

bool is_annotation_keyword(const std::string& k) {
  return annotation_keywords().count(k) > 0 || k.rfind("x-", 0) == 0;
}

const Schema& resolve_pointer(const Schema& root, const std::string& pointer) {
  if (pointer.empty() || pointer[0] != '#')
    fail("JSON schema: only local $refs ('#/...') are supported, got '{}'", pointer);
  const Schema* cur = &root;
  if (pointer.size() > 1 && pointer[1] != '/') fail("JSON schema: $ref '{}' (anchors) is not supported", pointer);
  size_t i = 1;
  while (i < pointer.size()) {
    const size_t j = pointer.find('/', i + 1);
    const std::string tok = unescape_token(pointer.substr(i + 1, j == std::string::npos ? std::string::npos : j - i - 1));
    if (cur->is_object() && cur->contains(tok)) {
      cur = &(*cur)[tok];
    } else if (cur->is_array() && !tok.empty() && std::all_of(tok.begin(), tok.end(), ::isdigit) &&
               std::stoull(tok) < cur->size()) {
      cur = &(*cur)[std::stoull(tok)];
    } else {
      fail("JSON schema: $ref '{}' does not resolve", pointer);
    }
    i = j == std::string::npos ? pointer.size() : j;
  }
  return *cur;
}

const Schema& deref(const Schema& root, const Schema& s) {
  const Schema* cur = &s;
  for (int hops = 0; cur->is_object() && cur->contains("$ref"); ++hops) {
    if (hops > 64) fail("JSON schema: $ref chain loops");
    for (const auto& [k, v] : cur->items())
      if (k != "$ref" && !is_annotation_keyword(k)) return *cur;  // $ref with siblings: the caller merges
    if (!(*cur)["$ref"].is_string()) fail("JSON schema: '$ref' must be a string");
    cur = &resolve_pointer(root, (*cur)["$ref"].get<std::string>());
  }
  return *cur;
}

Schema merge_schemas(const Schema& root, const Schema& a0, const Schema& b0) {
  const Schema& a = deref(root, a0);
  const Schema& b = deref(root, b0);
  if (a.is_boolean()) {
    if (!a.get<bool>()) fail("JSON schema: an allOf containing 'false' accepts nothing");
    return b;
  }
  if (b.is_boolean()) {
    if (!b.get<bool>()) fail("JSON schema: an allOf containing 'false' accepts nothing");
    return a;
  }
  if (!a.is_object() || !b.is_object()) fail("JSON schema: allOf members must be schemas");
  if (a.contains("$ref") || b.contains("$ref")) fail("JSON schema: '$ref' beside other keywords inside allOf is not supported");
  Schema out = a;
  // Keys each side allows: its own properties, or any when additionalProperties is not false.
  auto side_allows = [&](const Schema& s, const std::string& k) { return !forbids_key(s, k); };
  for (const auto& [k, v] : b.items()) {
    if (k == kMergedPatterns && v.is_array()) {
      for (const auto& p : v) out[kMergedPatterns].push_back(p);
      continue;
    }
    if (is_annotation_keyword(k)) continue;
    if (!out.contains(k)) {
      out[k] = v;
      continue;
    }
    const Schema& av = out[k];
    if (k == "type") {
      std::set<std::string> ta = type_set(av), tb = type_set(v), both;
      for (const auto& t : ta) {
        if (tb.count(t)) both.insert(t);
        else if (t == "integer" && tb.count("number")) both.insert("integer");
        else if (t == "number" && tb.count("integer")) both.insert("integer");
      }
      if (both.empty()) fail("JSON schema: allOf branches require different types, so nothing matches");
      Schema arr = Schema::array();
      for (const auto& t : both) arr.push_back(t);
      out[k] = arr.size() == 1 ? arr[0] : arr;
    } else if (k == "required") {
      Schema r = av;
      for (const auto& x : v)
        if (std::find(r.begin(), r.end(), x) == r.end()) r.push_back(x);
      out[k] = r;
    } else if (k == "properties") {
      // Handled below with additionalProperties.
    } else if (k == "minimum" || k == "minLength" || k == "minItems" || k == "minProperties" ||
               k == "exclusiveMinimum") {
      if (!av.is_number() || !v.is_number()) fail("JSON schema: allOf with non-numeric '{}' is not supported", k);
      out[k] = av.get<double>() >= v.get<double>() ? av : v;
    } else if (k == "maximum" || k == "maxLength" || k == "maxItems" || k == "maxProperties" ||
               k == "exclusiveMaximum") {
      if (!av.is_number() || !v.is_number()) fail("JSON schema: allOf with non-numeric '{}' is not supported", k);
      out[k] = av.get<double>() <= v.get<double>() ? av : v;
    } else if (k == "enum") {
      Schema e = Schema::array();
      for (const auto& x : av)
        for (const auto& y : v)
          if (json_equal(x, y)) {
            e.push_back(x);
            break;
          }
      if (e.empty()) fail("JSON schema: allOf branches have no enum value in common");
      out[k] = e;
    } else if (k == "items" && av.is_object() && v.is_object()) {
      out[k] = Schema{{"allOf", Schema::array({av, v})}};
    } else if (k == "additionalProperties") {
      // Handled below.
    } else if (k == "pattern" && av.is_string() && v.is_string()) {
      // Both hold (zod writes z.string().startsWith("a").endsWith("z") as two allOf patterns): the
      // string compiler intersects them.
      out[kMergedPatterns].push_back(v);
    } else if (av != v) {
      fail("JSON schema: allOf branches with different '{}' cannot be combined", k);
    }
  }
  // Properties: each key the merged schema may write must be allowed by both sides, and its value
  // must satisfy both sides' schemas for it (their property, else their additionalProperties).
  if (a.contains("properties") || b.contains("properties") || a.contains("additionalProperties") ||
      b.contains("additionalProperties")) {
    auto schema_for = [&](const Schema& s, const std::string& k) -> Schema {
      if (const Schema* p = property(s, k)) return *p;
      if (s.contains("additionalProperties") && s["additionalProperties"].is_object()) return s["additionalProperties"];
      return true;
    };
    std::vector<std::string> keys;
    for (const Schema* s : {&a, &b})
      if (s->contains("properties") && (*s)["properties"].is_object())
        for (const auto& [k, v] : (*s)["properties"].items())
          if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    Schema props = Schema::object();
    for (const auto& k : keys) {
      if (!side_allows(a, k) || !side_allows(b, k)) {
        if (requires_key(a, k) || requires_key(b, k))
          fail("JSON schema: allOf requires property '{}' that another branch forbids", k);
        continue;
      }
      const Schema sa = schema_for(a, k), sb = schema_for(b, k);
      props[k] = sa == Schema(true) ? sb : sb == Schema(true) ? sa : Schema{{"allOf", Schema::array({sa, sb})}};
    }
    out["properties"] = props;
    const Schema apa = a.value("additionalProperties", Schema(true));
    const Schema apb = b.value("additionalProperties", Schema(true));
    if (apa == Schema(false) || apb == Schema(false)) {
      out["additionalProperties"] = false;
    } else if (apa == Schema(true)) {
      if (apb == Schema(true)) out.erase("additionalProperties");
      else out["additionalProperties"] = apb;
    } else if (apb == Schema(true)) {
      out["additionalProperties"] = apa;
    } else {
      out["additionalProperties"] = Schema{{"allOf", Schema::array({apa, apb})}};
    }
  }
  return out;
}

bool provably_disjoint(const Schema& root, const Schema& a, const Schema& b) {
  return disjoint_values(root, deref(root, a), deref(root, b), 0);
}

}  // namespace dpserve::constrain
