// JSON Schema -> grammar. Types, properties / required / additionalProperties (emitted in the
// schema's property order), enum / const, arrays (items, prefixItems, min/maxItems), nested
// objects, anyOf / oneOf (when the branches provably exclude each other) / allOf, local $ref and
// $defs (recursion included), string pattern / format / length, number and integer bounds.
// A keyword that constrains values but cannot be enforced is an error naming it, never ignored.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "constrain/grammar.h"

namespace dpserve::constrain {

struct JsonSchemaOptions {
  // Whitespace allowed between JSON tokens, as a regular expression ("" for compact output). The
  // default takes json.dumps' style (one space) and pretty-printing (a newline and up to 16 spaces
  // of indentation), and is bounded: with any run of whitespace allowed, a model (a random one
  // always) can fill its whole output with it, since hundreds of tokens are whitespace.
  std::string whitespace = "(?:[ ]|\\n[ ]{0,16})?";
  // Upper bounds above this are enforced as this (a stricter bound; outputs stay valid): each
  // repetition is unrolled into the automaton.
  int32_t max_repeat = 1024;
};

class JsonSchemaCompiler {
 public:
  explicit JsonSchemaCompiler(Grammar& g, JsonSchemaOptions opt = {});

  // A JSON value valid under `schema`; its $refs resolve inside `schema` itself. Throws
  // dpserve::Error naming the keyword and where it is ("at #/properties/x").
  ExprId value(const nlohmann::ordered_json& schema);
  ExprId any_value();   // any JSON value
  ExprId any_object();  // any JSON object
  ExprId ws();          // the whitespace allowed between tokens
  ExprId json_string_literal(std::string_view s);  // "s" as JSON writes it

 private:
  using Schema = nlohmann::ordered_json;
  ExprId compile(const Schema& s, const std::string& path, int depth);
  ExprId compile_ref(const std::string& pointer, const std::string& path, int depth);
  ExprId compile_type(const Schema& s, const std::string& type, const std::string& path, int depth);
  ExprId compile_object(const Schema& s, const std::string& path, int depth);
  ExprId compile_array(const Schema& s, const std::string& path, int depth);
  ExprId compile_string(const Schema& s, const std::string& path);
  ExprId compile_number(const Schema& s, bool integer, const std::string& path);
  ExprId literal_value(const Schema& v);
  ExprId string_char();
  ExprId string_intersection(const std::vector<std::string>& patterns, const std::string& format,
                             std::optional<int64_t> min_len, std::optional<int64_t> max_len, const std::string& path,
                             const std::vector<std::string>* key_exclude = nullptr);
  ExprId string_content(const Schema& s, const std::string& path, const std::vector<std::string>* key_exclude);
  ExprId extra_key(const std::vector<std::string>& declared);
  ExprId as_rule(ExprId e);  // a rule of its own, so the automaton builder may share it
  const Schema& doc() const { return docs_.back(); }

  Grammar& g_;
  JsonSchemaOptions opt_;
  std::deque<Schema> docs_;  // documents being compiled (refs resolve in the last)
  std::map<std::pair<size_t, std::string>, int32_t> ref_rules_;
  int32_t any_rule_ = -1;
  ExprId ws_ = -1;
};

// Grammar for a whole JSON Schema given as text (parsed keeping property order).
Grammar json_schema_grammar(std::string_view schema_text, const JsonSchemaOptions& opt = {});
// Grammar for any JSON object (OpenAI's response_format json_object).
Grammar json_object_grammar(const JsonSchemaOptions& opt = {});

}  // namespace dpserve::constrain
