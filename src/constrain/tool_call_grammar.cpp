#include "constrain/tool_call_grammar.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "constrain/harmony_grammar.h"
#include "constrain/reasoning_prefix.h"
#include "constrain/trigger_text.h"
#include "core/check.h"

namespace dpserve::constrain {

using ojson = nlohmann::ordered_json;

const char* format_name(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::kHermes: return "hermes";
    case ToolCallFormat::kLlama3: return "llama3";
    case ToolCallFormat::kDeepSeekV3: return "deepseekv3";
    case ToolCallFormat::kDeepSeekV31: return "deepseekv31";
    case ToolCallFormat::kMistral: return "mistral";
    case ToolCallFormat::kMistralV11: return "mistral_v11";
    case ToolCallFormat::kQwen3Coder: return "qwen3_coder";
    case ToolCallFormat::kGlm45: return "glm45";
    case ToolCallFormat::kGlm47: return "glm47";
    case ToolCallFormat::kHarmony: return "harmony";
  }
  return "?";
}

std::string ToolCallSpec::to_text() const {
  ojson j;
  j["format"] = format_name(format);
  j["tools"] = ojson::array();
  for (const auto& [name, params] : tools) j["tools"].push_back({{"name", name}, {"parameters", params}});
  j["only"] = only ? ojson(*only) : ojson(nullptr);
  j["parallel"] = parallel;
  j["think"] = think;
  j["think_open"] = think_open;
  j["text"] = text;
  j["special_tags"] = special_tags;
  return j.dump();
}

ToolCallSpec ToolCallSpec::from_text(std::string_view text) {
  ToolCallSpec s;
  try {
    const ojson j = ojson::parse(text);
    const std::string f = j.at("format").get<std::string>();
    bool known = false;
    for (const auto k : {ToolCallFormat::kHermes, ToolCallFormat::kLlama3, ToolCallFormat::kDeepSeekV3,
                         ToolCallFormat::kDeepSeekV31, ToolCallFormat::kMistral, ToolCallFormat::kMistralV11,
                         ToolCallFormat::kQwen3Coder, ToolCallFormat::kGlm45, ToolCallFormat::kGlm47,
                         ToolCallFormat::kHarmony})
      if (f == format_name(k)) s.format = k, known = true;
    if (!known) fail("tool call grammar: unknown format '{}'", f);
    for (const auto& t : j.at("tools")) s.tools.push_back({t.at("name").get<std::string>(), t.at("parameters")});
    if (!j.at("only").is_null()) s.only = j.at("only").get<std::string>();
    s.parallel = j.at("parallel").get<bool>();
    s.think = j.at("think").get<bool>();
    s.think_open = j.value("think_open", false);
    s.text = j.value("text", false);
    s.special_tags = j.value("special_tags", false);
  } catch (const ojson::exception& e) {
    fail("tool call grammar: malformed spec: {}", e.what());
  }
  return s;
}

bool qwen3_coder_raw_string(const ojson& p) {
  if (!p.is_object()) return true;  // `true` / `{}`: any value, read as text as SGLang reads an untyped one
  if (const auto t = p.find("type"); t != p.end()) {
    if (t->is_string()) return *t == "string";
    return t->is_array() && std::find(t->begin(), t->end(), ojson("string")) != t->end();
  }
  if (const auto c = p.find("const"); c != p.end()) return c->is_string();
  if (const auto e = p.find("enum"); e != p.end() && e->is_array())
    return std::all_of(e->begin(), e->end(), [](const ojson& v) { return v.is_string(); });
  return true;
}

namespace {

// A Qwen3-Coder or GLM parameter's value and the text that closes it (`kClose`: "\n</parameter>", or
// "</arg_value>"). A raw string can be held to an enum / const or a length (its characters then exclude
// '<', so it cannot close early); other string keywords have no raw form to enforce.
ExprId coder_value(Grammar& g, JsonSchemaCompiler& json, const ojson& p, const std::string& where, int32_t max_repeat,
                   std::string_view kClose, const char* format) {
  if (!qwen3_coder_raw_string(p)) {
    try {
      return g.seq({json.value(p), g.literal(kClose)});
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
  }
  if (!p.is_object()) return text_until(g, kClose);
  static const std::set<std::string> kFree = {"type",      "description", "title",    "default",   "examples",
                                              "$comment",  "deprecated",  "readOnly", "writeOnly", "minLength",
                                              "maxLength", "enum",        "const"};
  for (const auto& [k, v] : p.items())
    if (!kFree.count(k))
      fail("{}: '{}' cannot be enforced on a string in {}'s format (its strings are raw text)", where, k, format);
  std::vector<std::string> words;
  if (p.contains("const")) {
    words.push_back(p["const"].get<std::string>());
  } else if (p.contains("enum")) {
    for (const auto& v : p["enum"]) words.push_back(v.get<std::string>());
  }
  if (!words.empty() || p.contains("enum")) {
    std::vector<ExprId> alts;
    for (const auto& w : words) alts.push_back(g.literal(w));
    if (alts.empty()) fail("{}: an empty enum admits no value", where);
    return g.seq({g.alt(std::move(alts)), g.literal(kClose)});
  }
  if (!p.contains("minLength") && !p.contains("maxLength")) return text_until(g, kClose);
  auto bound = [&](const char* k, int64_t dflt) {
    if (!p.contains(k)) return dflt;
    if (!p[k].is_number_integer() || p[k].get<int64_t>() < 0) fail("{}: '{}' must be a non-negative integer", where, k);
    return std::min<int64_t>(p[k].get<int64_t>(), max_repeat);
  };
  const int64_t lo = bound("minLength", 0), hi = bound("maxLength", max_repeat);
  if (lo > hi) fail("{}: minLength is above maxLength", where);
  CodepointSet no_tag;
  no_tag.add('<');
  return g.seq({g.repeat(g.chars(no_tag.complement()), int32_t(lo), int32_t(hi)), g.literal(kClose)});
}

// One Qwen3-Coder call without its <tool_call> lines (the function, then its parameters), or one GLM
// call without its <tool_call> tags (the name, then key / value pairs): the parameters in the schema's
// property order, the required ones always, the others optionally.
ExprId coder_call(Grammar& g, JsonSchemaCompiler& json, const std::string& name, const ojson& params,
                  int32_t max_repeat, ToolCallFormat f) {
  const char* format = format_name(f);
  const std::string where = fmt::format("tool '{}'", name);
  if (params.is_object())
    for (const char* k : {"anyOf", "oneOf", "allOf", "$ref", "not", "if", "patternProperties", "minProperties",
                          "maxProperties", "dependentRequired", "dependentSchemas"})
      if (params.contains(k)) fail("{}: '{}' cannot be enforced in {}'s format", where, k, format);
  const bool glm = f == ToolCallFormat::kGlm45 || f == ToolCallFormat::kGlm47;
  const std::string nl = f == ToolCallFormat::kGlm47 ? "" : "\n";
  std::vector<ExprId> parts = {g.literal(glm ? name + nl : "<function=" + name + ">\n")};
  const ojson none = ojson::object();
  const ojson& props = params.is_object() && params.contains("properties") ? params["properties"] : none;
  const ojson required = params.is_object() ? params.value("required", ojson::array()) : ojson::array();
  for (const auto& [key, prop] : props.items()) {
    if (key.empty() || key.find_first_of("<>\n") != std::string::npos)
      fail("{}: the parameter name '{}' cannot be written in {}'s format", where, key, format);
    const std::string at = fmt::format("{}, parameter '{}'", where, key);
    const ExprId one =
        glm ? g.seq({g.literal("<arg_key>" + key + "</arg_key>" + nl + "<arg_value>"),
                     coder_value(g, json, prop, at, max_repeat, "</arg_value>", format), g.literal(nl)})
            : g.seq({g.literal("<parameter=" + key + ">\n"),
                     coder_value(g, json, prop, at, max_repeat, "\n</parameter>", format), g.literal("\n")});
    const bool needed = std::find(required.begin(), required.end(), ojson(key)) != required.end();
    parts.push_back(needed ? one : g.optional(one));
  }
  if (!glm) parts.push_back(g.literal("</function>"));
  return g.seq(std::move(parts));
}

// tool_choice auto with strict tools: free text, in which the format's opener starts calls (as many
// as the format writes in one section), then free text again, or the end when calls are not parallel.
ExprId text_with_calls(Grammar& g, const ToolCallSpec& spec, ExprId one, std::vector<ExprId> v11_after_opener) {
  const bool many = spec.parallel;
  if (spec.format == ToolCallFormat::kLlama3) {
    // The parser reads the turn as calls when it opens with `{` (after whitespace), else as content.
    CodepointSet ws;
    for (char c : {' ', '\t', '\r', '\n'}) ws.add(uint32_t(c));
    CodepointSet not_call = ws;
    not_call.add('{');
    const ExprId lead = g.star(g.chars(ws));
    const ExprId calls = many ? g.seq({one, g.star(g.seq({g.literal("; "), one}))}) : one;
    const ExprId text = g.optional(g.seq({g.chars(not_call.complement()), g.star(g.chars(CodepointSet::any()))}));
    return g.seq({lead, g.alt({calls, text})});
  }
  const int32_t loop = g.add_rule("(text with tool calls)");
  const ExprId next = spec.parallel ? g.ref(loop) : g.empty();
  std::string opener;
  ExprId after = -1;  // every format but kLlama3 (returned above) sets it
  switch (spec.format) {
    case ToolCallFormat::kHermes:
    case ToolCallFormat::kQwen3Coder:
      opener = "<tool_call>";
      after = g.seq({g.literal("\n"), one, g.literal("\n</tool_call>")});
      break;
    case ToolCallFormat::kGlm45:
    case ToolCallFormat::kGlm47:
      opener = "<tool_call>";
      after = g.seq({one, g.literal("</tool_call>")});
      break;
    case ToolCallFormat::kDeepSeekV3:
    case ToolCallFormat::kDeepSeekV31: {
      opener = "<｜tool▁calls▁begin｜>";
      const ExprId rest = spec.format == ToolCallFormat::kDeepSeekV3 ? g.seq({g.literal("\n"), one}) : one;
      after = g.seq({many ? g.seq({one, g.star(rest)}) : one, g.literal("<｜tool▁calls▁end｜>")});
      break;
    }
    case ToolCallFormat::kMistral:
      opener = "[TOOL_CALLS]";
      after = g.seq(
          {g.literal(" ["), many ? g.seq({one, g.star(g.seq({g.literal(", "), one}))}) : one, g.literal("]")});
      break;
    case ToolCallFormat::kMistralV11:
      opener = "[TOOL_CALLS]";
      after = g.alt(std::move(v11_after_opener));
      break;
    case ToolCallFormat::kLlama3: break;   // above
    case ToolCallFormat::kHarmony: break;  // tool_call_grammar builds its own
  }
  scan_text(g, loop, {{opener, g.seq({after, next}), "trigger"}}, true, "tools");
  return g.ref(loop);
}

}  // namespace

Grammar tool_call_grammar(const ToolCallSpec& spec, const JsonSchemaOptions& opt) {
  if (spec.tools.empty()) fail("tool calls: no tools given");
  Grammar g;
  const int32_t root = g.add_rule("root");
  JsonSchemaCompiler json(g, opt);
  const ExprId ws = json.ws();
  const char* args_key =
      spec.format == ToolCallFormat::kHermes || spec.format == ToolCallFormat::kMistral ? "arguments" : "parameters";
  const bool deepseek = spec.format == ToolCallFormat::kDeepSeekV3 || spec.format == ToolCallFormat::kDeepSeekV31;
  std::vector<ExprId> calls;
  std::vector<ExprId> v11_after_opener;  // kMistralV11 calls without their [TOOL_CALLS]
  auto tag = [&](std::string_view t) { return spec.special_tags && !spec.text ? g.special_token(t) : g.literal(t); };
  for (const auto& [name, params] : spec.tools) {
    if (spec.only && *spec.only != name) continue;
    if (spec.format == ToolCallFormat::kQwen3Coder || spec.format == ToolCallFormat::kGlm45 ||
        spec.format == ToolCallFormat::kGlm47) {
      calls.push_back(coder_call(g, json, name, params, opt.max_repeat, spec.format));
      continue;
    }
    ExprId args;
    try {
      args = json.value(params.is_null() ? ojson::object() : params);
    } catch (const Error& e) {
      fail("tool '{}': {}", name, e.what());
    }
    if (spec.format == ToolCallFormat::kDeepSeekV3) {
      // Name and arguments apart, as DeepSeek-V3's chat template writes an assistant's tool_calls.
      calls.push_back(g.seq({g.literal("<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + name + "\n```json\n"), args,
                             g.literal("\n```<｜tool▁call▁end｜>")}));
      continue;
    }
    if (spec.format == ToolCallFormat::kMistralV11) {
      // As mistral-common encodes an assistant's tool call from tokenizer v11 on.
      calls.push_back(g.seq({tag("[TOOL_CALLS]"), g.literal(name), tag("[ARGS]"), args}));
      v11_after_opener.push_back(g.seq({g.literal(name + "[ARGS]"), args}));
      continue;
    }
    if (spec.format == ToolCallFormat::kHarmony) {
      calls.push_back(harmony_call(g, name, args));
      continue;
    }
    if (spec.format == ToolCallFormat::kDeepSeekV31) {
      calls.push_back(g.seq({g.literal("<｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>"), args,
                             g.literal("<｜tool▁call▁end｜>")}));
      continue;
    }
    calls.push_back(g.seq({g.literal("{"), ws, json.json_string_literal("name"), ws, g.literal(":"), ws,
                           json.json_string_literal(name), ws, g.literal(","), ws, json.json_string_literal(args_key),
                           ws, g.literal(":"), ws, args, ws, g.literal("}")}));
  }
  if (calls.empty()) fail("tool_choice names the function '{}', which is not among the tools", *spec.only);
  ExprId one = g.alt(std::move(calls));
  ExprId body;
  const bool many = spec.parallel && !spec.only;
  if (spec.format == ToolCallFormat::kHarmony) {
    // The analysis channel is harmony's own reasoning: `think` has no <think> block to add.
    const ExprId final_message =
        g.seq({harmony_final_header(g), g.star(g.chars(CodepointSet::any())), harmony_stop(g, "<|return|>")});
    body = g.seq({harmony_side_messages(g), spec.text ? g.alt({one, final_message}) : one});
    g.set_body(root, body);
    g.set_root(root);
    return g;
  }
  if (spec.text) {
    body = text_with_calls(g, spec, one, std::move(v11_after_opener));
  } else if (deepseek) {
    const ExprId next = spec.format == ToolCallFormat::kDeepSeekV3 ? g.seq({g.literal("\n"), one}) : one;
    const ExprId calls_of = many ? g.seq({one, g.star(next)}) : one;
    body = g.seq({g.literal("<｜tool▁calls▁begin｜>"), calls_of, g.literal("<｜tool▁calls▁end｜>")});
  } else if (spec.format == ToolCallFormat::kMistralV11) {
    body = many ? g.seq({one, g.star(one)}) : one;
  } else if (spec.format == ToolCallFormat::kMistral) {
    const ExprId calls_of = many ? g.seq({one, g.star(g.seq({g.literal(", "), one}))}) : one;
    body = g.seq({tag("[TOOL_CALLS]"), g.literal(" ["), calls_of, g.literal("]")});
  } else if (spec.format == ToolCallFormat::kHermes || spec.format == ToolCallFormat::kQwen3Coder) {
    const ExprId block = g.seq({g.literal("<tool_call>\n"), one, g.literal("\n</tool_call>")});
    body = many ? g.seq({block, g.star(g.seq({g.literal("\n"), block}))}) : block;
  } else if (spec.format == ToolCallFormat::kGlm45 || spec.format == ToolCallFormat::kGlm47) {
    const ExprId block = g.seq({g.literal("<tool_call>"), one, g.literal("</tool_call>")});
    body = many ? g.seq({block, g.star(g.seq({g.literal("\n"), block}))}) : block;
  } else {
    body = many ? g.seq({one, g.star(g.seq({g.literal("; "), one}))}) : one;
  }
  if (spec.think_open) {
    // The template ended the prompt inside <think>: the reasoning goes on, closes, then the calls.
    body = g.seq({open_think_rest(g), body});
  } else if (spec.think) {
    const ExprId think = g.seq({g.literal("<think>"), text_until(g, "</think>"), g.repeat(g.literal("\n"), 0, 2)});
    body = g.seq({g.optional(think), body});
  }
  g.set_body(root, body);
  g.set_root(root);
  return g;
}

}  // namespace dpserve::constrain
