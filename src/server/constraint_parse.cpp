#include "server/constraint_parse.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "constrain/compile_cache.h"
#include "constrain/gbnf_compiler.h"
#include "core/check.h"
#include "server/openai_error.h"
#include "server/request_parse.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using constrain::ConstraintKind;
using constrain::ConstraintSpec;
using constrain::ReasoningPrefix;

namespace {

const json* field(const json& b, const char* name) {
  auto it = b.find(name);
  if (it == b.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

ojson original_subtree(std::string_view raw_body, const std::vector<std::string>& path) {
  ojson cur;
  try {
    cur = ojson::parse(raw_body);
  } catch (const ojson::exception&) {
    return nullptr;  // the body already parsed once; this cannot fail in practice
  }
  for (const auto& k : path) {
    if (!cur.is_object() || !cur.contains(k)) return nullptr;
    ojson next = std::move(cur[k]);
    cur = std::move(next);
  }
  return cur;
}

std::shared_ptr<const constrain::Automaton> compile_or_400(ConstraintSpec spec, const std::string& param,
                                                           const ParseContext& ctx) {
  // gpt-oss: a JSON answer is its final message's body. A regex, a grammar or a structural tag holds
  // the output as written (it may spell the messages itself, as SGLang's raw-output fields do).
  if (spec.prefix == ReasoningPrefix::kHarmony && spec.kind != ConstraintKind::kJsonSchema &&
      spec.kind != ConstraintKind::kJsonObject)
    spec.prefix = ReasoningPrefix::kNone;
  try {
    // A special token a grammar names must be one of this tokenizer's (else the output would stop there).
    if (spec.kind == ConstraintKind::kEbnf && ctx.tok)
      for (const std::string& name : constrain::gbnf_token_names(spec.text))
        if (const int32_t id = ctx.tok->piece_to_id(name); id < 0 || !ctx.tok->is_special(id))
          fail("the grammar names the token {}, which is not a special token of this model's tokenizer{}", name,
               id < 0 ? "" : " (it is text: write it as a string, \"" + name + "\")");
    if (ctx.constraints) return ctx.constraints->get(spec);
    return constrain::compile_constraint(spec);
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("'{}' cannot be enforced: {}", param, e.what()), param, "invalid_request_error",
                   "unsupported_constraint");
  }
}

void parse_response_format(const json& body, std::string_view raw_body, Request& r, const ParseContext& ctx,
                           ReasoningPrefix prefix) {
  const json* rf = field(body, "response_format");
  if (!rf) return;
  if (!rf->is_object()) bad_param("response_format", "'response_format' must be an object with a 'type'");
  const json* type = field(*rf, "type");
  if (!type || !type->is_string())
    bad_param("response_format.type",
              "'response_format.type' must be one of text, json_object, json_schema, structural_tag");
  const std::string t = type->get<std::string>();
  if (t == "structural_tag") {
    // vLLM's and SGLang's: the whole object is the structural tag, legacy (structures, triggers)
    // or current (format); keys kept in the client's order for the schemas inside.
    for (const auto& [k, v] : rf->items())
      if (k != "type" && k != "structures" && k != "triggers" && k != "format")
        bad_param("response_format." + k, fmt::format("'response_format.{}' is not a field of a structural tag "
                                                      "(it takes format, or structures and triggers)", k));
    const ojson written = original_subtree(raw_body, {"response_format"});
    const std::string text = written.is_null() ? rf->dump() : written.dump();
    r.constraint = compile_or_400({ConstraintKind::kStructuralTag, text, prefix}, "response_format", ctx);
    return;
  }
  for (const auto& [k, v] : rf->items())
    if (k != "type" && k != "json_schema") bad_param("response_format." + k, fmt::format("'response_format.{}' is not a known field", k));
  if (t == "text") return;
  if (t == "json_object") {
    r.constraint = compile_or_400({ConstraintKind::kJsonObject, "", prefix}, "response_format", ctx);
    return;
  }
  if (t != "json_schema")
    bad_param("response_format.type", fmt::format("'response_format.type' must be one of text, json_object, "
                                                  "json_schema, structural_tag; got '{}'", t));
  const json* js = field(*rf, "json_schema");
  if (!js || !js->is_object())
    bad_param("response_format.json_schema", "'response_format.json_schema' must be an object with a 'schema'");
  for (const auto& [k, v] : js->items()) {
    if (k == "name") {
      if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 64)
        bad_param("response_format.json_schema.name", "'response_format.json_schema.name' must be a string of 1 to 64 characters");
    } else if (k == "strict") {
      // Enforced either way: the grammar always holds the output to the schema.
      if (!v.is_boolean() && !v.is_null())
        bad_param("response_format.json_schema.strict", "'response_format.json_schema.strict' must be a boolean");
    } else if (k == "schema") {
      if (!v.is_object() && !v.is_boolean())
        bad_param("response_format.json_schema.schema", "'response_format.json_schema.schema' must be a JSON Schema object");
    } else if (k != "description") {
      bad_param("response_format.json_schema." + k, fmt::format("'response_format.json_schema.{}' is not a known field", k));
    }
  }
  if (!field(*js, "name")) bad_param("response_format.json_schema.name", "'response_format.json_schema.name' is required");
  const json* schema = field(*js, "schema");
  if (!schema) {  // OpenAI leaves the schema optional: any JSON object then
    r.constraint = compile_or_400({ConstraintKind::kJsonObject, "", prefix}, "response_format", ctx);
    return;
  }
  const ojson written = original_subtree(raw_body, {"response_format", "json_schema", "schema"});
  const std::string text = written.is_null() ? schema->dump() : written.dump();
  r.constraint = compile_or_400({ConstraintKind::kJsonSchema, text, prefix}, "response_format.json_schema.schema", ctx);
}

void parse_sglang_constraint(const json& sp, std::string_view raw_body, Request& r, const ParseContext& ctx,
                             ReasoningPrefix prefix, std::string_view at) {
  // Where the fields sit, for the errors: "sampling_params.regex" on /generate, "regex" on a chat body.
  auto name = [&](const char* f) { return at.empty() ? std::string(f) : fmt::format("{}.{}", at, f); };
  const json* regex = field(sp, "regex");
  const json* schema = field(sp, "json_schema");
  const json* ebnf = field(sp, "ebnf");
  const json* tag = field(sp, "structural_tag");
  if (int(regex != nullptr) + int(schema != nullptr) + int(ebnf != nullptr) + int(tag != nullptr) > 1)
    bad_param(at.empty() ? "regex" : std::string(at), "give at most one of 'regex', 'json_schema', 'ebnf' and 'structural_tag'");
  if (tag) {
    // SGLang takes the structural tag as JSON text, as xgrammar does.
    if (!tag->is_string())
      bad_param(name("structural_tag"), "'structural_tag' must be a string (a structural tag as JSON)");
    r.constraint = compile_or_400({ConstraintKind::kStructuralTag, tag->get<std::string>(), prefix},
                                  name("structural_tag"), ctx);
  } else if (regex) {
    if (!regex->is_string()) bad_param(name("regex"), "'regex' must be a string");
    r.constraint = compile_or_400({ConstraintKind::kRegex, regex->get<std::string>(), prefix}, name("regex"), ctx);
  } else if (ebnf) {
    if (!ebnf->is_string()) bad_param(name("ebnf"), "'ebnf' must be a string");
    r.constraint = compile_or_400({ConstraintKind::kEbnf, ebnf->get<std::string>(), prefix}, name("ebnf"), ctx);
  } else if (schema) {
    // SGLang takes the schema as JSON text; an object is accepted too.
    std::string text;
    if (schema->is_string()) {
      text = schema->get<std::string>();
    } else if (schema->is_object() || schema->is_boolean()) {
      const std::vector<std::string> path =
          at.empty() ? std::vector<std::string>{"json_schema"} : std::vector<std::string>{std::string(at), "json_schema"};
      const ojson written = original_subtree(raw_body, path);
      text = written.is_null() ? schema->dump() : written.dump();
    } else {
      bad_param(name("json_schema"), "'json_schema' must be a JSON Schema (as text or an object)");
    }
    r.constraint = compile_or_400({ConstraintKind::kJsonSchema, text, prefix}, name("json_schema"), ctx);
  }
}

namespace {

// vLLM's `choice`: the output is exactly one of the strings: a regex of their alternation, each
// string's ASCII punctuation escaped so it stands for itself.
std::string choice_regex(const json& choices, const std::string& param) {
  if (!choices.is_array() || choices.empty())
    bad_param(param, fmt::format("'{}' must be a non-empty array of strings", param));
  std::string re;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (!choices[i].is_string()) bad_param(param, fmt::format("'{}' item {} must be a string", param, i));
    if (i > 0) re += '|';
    for (char c : choices[i].get<std::string>()) {
      const auto u = uint8_t(c);
      if (u > 0x20 && u < 0x7f && !std::isalnum(u)) re += '\\';
      re += c;
    }
  }
  return re;
}

// A JSON Schema given as an object (its keys in the client's order, from the raw body at `path`) or
// as JSON text.
std::string schema_text(const json& v, std::string_view raw_body, const std::vector<std::string>& path,
                        const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_object() && !v.is_boolean())
    bad_param(param, fmt::format("'{}' must be a JSON Schema (an object, or its JSON text)", param));
  const ojson written = original_subtree(raw_body, path);
  return written.is_null() ? v.dump() : written.dump();
}

// vLLM's constraint: `structured_outputs` {json | regex | choice | grammar | structural_tag |
// json_object} (exactly one), or its older top-level guided_json / guided_regex / guided_choice /
// guided_grammar. Null when the body has none. `grammar` is read as GBNF, as vLLM's default backend (xgrammar) reads EBNF.
std::optional<ConstraintSpec> vllm_constraint(const json& body, std::string_view raw_body, std::string& param,
                                              ReasoningPrefix prefix) {
  std::vector<std::pair<std::string, const json*>> given;
  std::vector<std::string> path_root;
  if (const json* so = field(body, "structured_outputs")) {
    if (!so->is_object()) bad_param("structured_outputs", "'structured_outputs' must be an object");
    for (const auto& [k, v] : so->items()) {
      const std::string name = "structured_outputs." + k;
      if (v.is_null()) continue;
      if (k == "json" || k == "regex" || k == "choice" || k == "grammar" || k == "structural_tag") {
        given.emplace_back(k, &v);
      } else if (k == "json_object") {
        if (!v.is_boolean()) bad_param(name, fmt::format("'{}' must be a boolean", name));
        if (v.get<bool>()) given.emplace_back(k, &v);
      } else if (k == "disable_fallback") {
        // There is one constraint engine and nothing to fall back to: either value means the same.
        if (!v.is_boolean()) bad_param(name, fmt::format("'{}' must be a boolean", name));
      } else if (k == "disable_any_whitespace" || k == "disable_additional_properties") {
        if (!v.is_boolean()) bad_param(name, fmt::format("'{}' must be a boolean", name));
        if (v.get<bool>())
          bad_param(name, fmt::format("'{}' true is not supported per request{}", name,
                                      k == "disable_any_whitespace"
                                          ? " (the server's --constrained-json-disable-any-whitespace sets it for all)"
                                          : " (write additionalProperties: false into the schema)"));
      } else if (k == "whitespace_pattern") {
        bad_param(name, fmt::format("'{}' is not supported per request (the server's "
                                    "--constrained-json-whitespace-pattern sets it for all)", name));
      } else {
        bad_param(name, fmt::format("'{}' is not supported (structured_outputs takes json, regex, choice, grammar, "
                                    "structural_tag, json_object)", name));
      }
    }
    if (given.empty())
      bad_param("structured_outputs",
                "'structured_outputs' must give one of json, regex, choice, grammar, structural_tag or json_object");
    path_root = {"structured_outputs"};
  }
  for (const char* k : {"guided_json", "guided_regex", "guided_choice", "guided_grammar"})
    if (const json* v = field(body, k)) given.emplace_back(k, v);
  if (field(body, "guided_whitespace_pattern"))
    bad_param("guided_whitespace_pattern", "'guided_whitespace_pattern' is not supported per request (the server's "
                                           "--constrained-json-whitespace-pattern sets it for all)");
  if (given.empty()) return std::nullopt;
  if (given.size() > 1)
    bad_param(path_root.empty() ? given[1].first : "structured_outputs",
              fmt::format("give one output constraint; this request gives {} ('{}' and '{}')", given.size(),
                          given[0].first, given[1].first));
  // (Not a structured binding: clang before 16 cannot capture one in the lambda below.)
  const std::string key = given[0].first;
  const json* v = given[0].second;
  // One constraint given: from structured_outputs (then path_root is set), or a guided_ field.
  const bool nested = !path_root.empty();
  param = nested ? "structured_outputs." + key : key;
  const std::string kind = key.rfind("guided_", 0) == 0 ? key.substr(7) : key;
  auto text = [&](const std::string& what) {
    if (!v->is_string()) bad_param(param, fmt::format("'{}' must be a string ({})", param, what));
    return v->get<std::string>();
  };
  if (kind == "json_object") return ConstraintSpec{ConstraintKind::kJsonObject, "", prefix};
  if (kind == "regex") return ConstraintSpec{ConstraintKind::kRegex, text("a regular expression"), prefix};
  if (kind == "grammar") return ConstraintSpec{ConstraintKind::kEbnf, text("a GBNF grammar"), prefix};
  if (kind == "structural_tag")
    return ConstraintSpec{ConstraintKind::kStructuralTag, text("a structural tag as JSON"), prefix};
  if (kind == "choice") return ConstraintSpec{ConstraintKind::kRegex, choice_regex(*v, param), prefix};
  std::vector<std::string> path = path_root;
  path.push_back(key);
  return ConstraintSpec{ConstraintKind::kJsonSchema, schema_text(*v, raw_body, path, param), prefix};
}

}  // namespace

void parse_output_constraint(const json& body, std::string_view raw_body, Request& r, const ParseContext& ctx,
                             ReasoningPrefix prefix) {
  const bool rf = field(body, "response_format") != nullptr;
  const bool ext = field(body, "regex") || field(body, "ebnf");
  if (rf && ext) bad_param("response_format", "give one of 'response_format', 'regex' and 'ebnf'");
  std::string vllm_param;
  std::optional<ConstraintSpec> vllm = vllm_constraint(body, raw_body, vllm_param, prefix);
  if (vllm && (rf || ext))
    bad_param(vllm_param, fmt::format("give one output constraint: '{}' and '{}' both constrain the output", vllm_param,
                                      rf ? "response_format" : field(body, "regex") ? "regex" : "ebnf"));
  if (rf) {
    parse_response_format(body, raw_body, r, ctx, prefix);
  } else if (ext) {
    parse_sglang_constraint(body, raw_body, r, ctx, prefix, "");
  } else if (vllm) {
    r.constraint = compile_or_400(*vllm, vllm_param, ctx);
  }
}

void parse_logit_bias(const json& body, Request& r, const ParseContext& ctx) {
  const json* lb = field(body, "logit_bias");
  if (!lb) return;
  if (!lb->is_object()) bad_param("logit_bias", "'logit_bias' must be an object mapping token ids to biases");
  if (lb->size() > 1024) bad_param("logit_bias", "'logit_bias' takes at most 1024 tokens");
  const int64_t vocab = ctx.tok ? ctx.tok->vocab_size() : INT32_MAX;
  for (const auto& [k, v] : lb->items()) {
    // Canonical decimal only ("5", not " 5", "05", "+5" or "5.0"): strtoll accepted all of those, so
    // two keys could name one token and which bias won depended on the order of the object's keys.
    const bool canonical = !k.empty() && k.size() <= 10 && std::all_of(k.begin(), k.end(), [](char c) {
      return c >= '0' && c <= '9';
    }) && (k == "0" || k[0] != '0');
    const long long id = canonical ? std::stoll(k) : -1;
    if (!canonical || id >= vocab)
      bad_param("logit_bias", fmt::format("'logit_bias' key '{}' is not a token id in [0, {}) written in plain "
                                          "decimal digits",
                                          k, vocab));
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < -100 || v.get<double>() > 100)
      bad_param("logit_bias", fmt::format("'logit_bias' values must be numbers in [-100, 100], got {} for token {}",
                                          v.dump(), k));
    r.logit_bias.push_back(LogitBias{int32_t(id), float(v.get<double>())});
  }
}

}  // namespace dpserve
