#include "constrain/tool_call_grammar.h"

#include <fmt/format.h>

#include "core/check.h"

namespace dpserve::constrain {

using ojson = nlohmann::ordered_json;

std::string ToolCallSpec::to_text() const {
  ojson j;
  j["format"] = format == ToolCallFormat::kHermes ? "hermes" : "llama3";
  j["tools"] = ojson::array();
  for (const auto& [name, params] : tools) j["tools"].push_back({{"name", name}, {"parameters", params}});
  j["only"] = only ? ojson(*only) : ojson(nullptr);
  j["parallel"] = parallel;
  j["think"] = think;
  j["think_open"] = think_open;
  return j.dump();
}

ToolCallSpec ToolCallSpec::from_text(std::string_view text) {
  ToolCallSpec s;
  try {
    const ojson j = ojson::parse(text);
    s.format = j.at("format") == "llama3" ? ToolCallFormat::kLlama3 : ToolCallFormat::kHermes;
    for (const auto& t : j.at("tools")) s.tools.push_back({t.at("name").get<std::string>(), t.at("parameters")});
    if (!j.at("only").is_null()) s.only = j.at("only").get<std::string>();
    s.parallel = j.at("parallel").get<bool>();
    s.think = j.at("think").get<bool>();
    s.think_open = j.value("think_open", false);
  } catch (const ojson::exception& e) {
    fail("tool call grammar: malformed spec: {}", e.what());
  }
  return s;
}

ExprId text_until(Grammar& g, std::string_view stop) {
  DP_CHECK(!stop.empty());
  for (char c : stop) DP_CHECK(uint8_t(c) < 0x80, "text_until: the stop string must be ASCII");
  const size_t L = stop.size();
  // KMP: the state after reading byte c in state i (the longest prefix of `stop` ending there).
  std::vector<size_t> fail_at(L + 1, 0);
  for (size_t i = 1, k = 0; i < L; ++i) {
    while (k > 0 && stop[i] != stop[k]) k = fail_at[k];
    if (stop[i] == stop[k]) ++k;
    fail_at[i + 1] = k;
  }
  auto next = [&](size_t i, char c) {
    while (i > 0 && stop[i] != c) i = fail_at[i];
    return stop[i] == c ? i + 1 : 0;
  };
  const int32_t base = int32_t(g.num_rules());
  std::vector<int32_t> rules;
  for (size_t i = 0; i < L; ++i) rules.push_back(g.add_rule(fmt::format("until{}_{}", base, i)));
  for (size_t i = 0; i < L; ++i) {
    // Characters grouped by where they lead; every non-ASCII character restarts the match.
    std::vector<CodepointSet> to(L + 1);
    for (uint32_t c = 0; c < 0x80; ++c) to[next(i, char(c))].add(c);
    to[0].add(0x80, CodepointSet::kMax);
    std::vector<ExprId> alts;
    for (size_t k = 0; k <= L; ++k) {
      if (to[k].empty()) continue;
      const ExprId ch = g.chars(to[k]);
      alts.push_back(k == L ? ch : g.seq({ch, g.ref(rules[k])}));
    }
    g.set_body(rules[i], g.alt(std::move(alts)));
  }
  return g.ref(rules[0]);
}

Grammar tool_call_grammar(const ToolCallSpec& spec, const JsonSchemaOptions& opt) {
  if (spec.tools.empty()) fail("tool calls: no tools given");
  Grammar g;
  const int32_t root = g.add_rule("root");
  JsonSchemaCompiler json(g, opt);
  const ExprId ws = json.ws();
  const char* args_key = spec.format == ToolCallFormat::kHermes ? "arguments" : "parameters";
  std::vector<ExprId> calls;
  for (const auto& [name, params] : spec.tools) {
    if (spec.only && *spec.only != name) continue;
    ExprId args;
    try {
      args = json.value(params.is_null() ? ojson::object() : params);
    } catch (const Error& e) {
      fail("tool '{}': {}", name, e.what());
    }
    calls.push_back(g.seq({g.literal("{"), ws, json.json_string_literal("name"), ws, g.literal(":"), ws,
                           json.json_string_literal(name), ws, g.literal(","), ws, json.json_string_literal(args_key),
                           ws, g.literal(":"), ws, args, ws, g.literal("}")}));
  }
  if (calls.empty()) fail("tool_choice names the function '{}', which is not among the tools", *spec.only);
  ExprId one = g.alt(std::move(calls));
  ExprId body;
  const bool many = spec.parallel && !spec.only;
  if (spec.format == ToolCallFormat::kHermes) {
    const ExprId block = g.seq({g.literal("<tool_call>\n"), one, g.literal("\n</tool_call>")});
    body = many ? g.seq({block, g.star(g.seq({g.literal("\n"), block}))}) : block;
  } else {
    body = many ? g.seq({one, g.star(g.seq({g.literal("; "), one}))}) : one;
  }
  if (spec.think_open) {
    // The template ended the prompt inside <think>: the reasoning goes on, closes, then the calls.
    body = g.seq({text_until(g, "</think>"), g.repeat(g.literal("\n"), 0, 2), body});
  } else if (spec.think) {
    const ExprId think = g.seq({g.literal("<think>"), text_until(g, "</think>"), g.repeat(g.literal("\n"), 0, 2)});
    body = g.seq({g.optional(think), body});
  }
  g.set_body(root, body);
  g.set_root(root);
  return g;
}

}  // namespace dpserve::constrain
