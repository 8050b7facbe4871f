#include "server/tools_parse.h"

#include <fmt/format.h>

#include "constrain/tool_call_grammar.h"
#include "server/chat_output.h"
#include "server/constraint_parse.h"
#include "server/openai_error.h"
#include "server/request_parse.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(uint8_t(c)) || c == '_' || c == '-')) return false;
  return true;
}

// Each tool's parameters schema as the client wrote it (key order kept: a grammar writes properties in
// it); read only where needed, since it parses the tools again.
std::vector<ojson> written_parameters(std::string_view raw_body, size_t n) {
  std::vector<ojson> out;
  const ojson written = original_subtree(raw_body, {"tools"});
  for (size_t i = 0; i < n; ++i) {
    ojson params = written.is_array() && i < written.size() && written[i].contains("function")
                       ? written[i]["function"].value("parameters", ojson(nullptr))
                       : ojson(nullptr);
    // OpenAI: no parameters is an empty parameter list, so the arguments are still an object.
    out.push_back(params.is_null() ? ojson{{"type", "object"}} : std::move(params));
  }
  return out;
}

}  // namespace

std::shared_ptr<ChatOutputParser> chat_output_parser(ReasoningParser r, ToolCallParser t, const GenSpec& spec,
                                                     uint64_t seed) {
  if (r == ReasoningParser::kNone && spec.tool_names.empty()) return nullptr;
  auto p = std::make_shared<ChatOutputParser>(r, t, spec.tool_names, spec.reasoning_open, seed, !spec.parallel_tool_calls);
  p->set_tool_parameters(spec.tool_parameters);
  return p;
}

bool tools_for_template(const json& body) {
  auto t = body.find("tools");
  if (t == body.end() || !t->is_array() || t->empty()) return false;
  auto c = body.find("tool_choice");
  return !(c != body.end() && c->is_string() && *c == "none");
}

void parse_tools(const json& body, std::string_view raw_body, GenSpec& spec, const ParseContext& ctx) {
  auto t = body.find("tools");
  const bool has_tools = t != body.end() && !t->is_null();
  auto c = body.find("tool_choice");
  const bool has_choice = c != body.end() && !c->is_null();
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null() && !p->is_boolean())
    bad_param("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
  if (!has_tools) {
    if (has_choice && !(c->is_string() && *c == "none"))
      bad_param("tool_choice", "'tool_choice' needs 'tools'");
    return;
  }
  if (!t->is_array()) bad_param("tools", "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}");
  if (t->size() > 128) bad_param("tools", "'tools' takes at most 128 functions");
  std::vector<std::string> names;
  std::string strict_at;  // the first tool with strict: true
  for (size_t i = 0; i < t->size(); ++i) {
    const json& tool = (*t)[i];
    const std::string p = fmt::format("tools[{}]", i);
    if (!tool.is_object() || tool.value("type", "") != "function" || !tool.contains("function") ||
        !tool["function"].is_object())
      bad_param(p, fmt::format("'{}' must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}", p));
    const json& f = tool["function"];
    if (!f.contains("name") || !f["name"].is_string() || !valid_name(f["name"].get<std::string>()))
      bad_param(p + ".function.name", fmt::format("'{}.function.name' must be 1 to 64 of a-z, A-Z, 0-9, _ and -", p));
    const std::string name = f["name"].get<std::string>();
    if (std::find(names.begin(), names.end(), name) != names.end())
      bad_param(p + ".function.name", fmt::format("two tools are named '{}'", name));
    if (f.contains("parameters") && !f["parameters"].is_null() && !f["parameters"].is_object())
      bad_param(p + ".function.parameters", fmt::format("'{}.function.parameters' must be a JSON Schema object", p));
    for (const auto& [k, v] : f.items())
      if (k != "name" && k != "description" && k != "parameters" && k != "strict")
        bad_param(p + ".function." + k, fmt::format("'{}.function.{}' is not a known field", p, k));
    if (f.contains("strict") && !f["strict"].is_null() && !f["strict"].is_boolean())
      bad_param(p + ".function.strict", fmt::format("'{}.function.strict' must be a boolean", p));
    if (f.contains("strict") && f["strict"].is_boolean() && f["strict"].get<bool>() && strict_at.empty())
      strict_at = p + ".function.strict";
    names.push_back(name);
  }
  std::string choice = "auto";
  std::optional<std::string> only;
  if (has_choice) {
    if (c->is_string()) {
      choice = c->get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required")
        bad_param("tool_choice", fmt::format("'tool_choice' must be none, auto, required or a named function; got '{}'",
                                             choice));
    } else if (c->is_object() && c->value("type", "") == "function" && c->contains("function") &&
               (*c)["function"].is_object() && (*c)["function"].contains("name") && (*c)["function"]["name"].is_string()) {
      only = (*c)["function"]["name"].get<std::string>();
      if (std::find(names.begin(), names.end(), *only) == names.end())
        bad_param("tool_choice", fmt::format("'tool_choice' names the function '{}', which is not among the tools", *only));
      choice = "function";
    } else {
      bad_param("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
  }
  if (choice == "none") return;
  if (ctx.tool_parser == ToolCallParser::kNone)
    bad_param("tools", "this server parses no tool calls: start it with --tool-call-parser (e.g. qwen3, hermes, llama3, deepseekv3)");
  spec.tool_names = names;
  // Qwen3-Coder's and GLM's values are typed by the schemas when the output is read.
  if (ctx.tool_parser == ToolCallParser::kQwen3Coder || ctx.tool_parser == ToolCallParser::kGlm45 ||
      ctx.tool_parser == ToolCallParser::kGlm47)
    spec.tool_parameters = written_parameters(raw_body, names.size());
  spec.parallel_tool_calls = body.value("parallel_tool_calls", true);
  // The parser finds calls by their tags in the text. Where a tag is a special token of this tokenizer
  // (Mistral's [TOOL_CALLS] and [ARGS]), the default decoding would drop it and the calls would reach
  // the client as content; special tokens are then kept unless the request says otherwise (vLLM
  // does the same for Mistral). A matched EOS stays out of the text either way.
  if (ctx.tok && !body.contains("skip_special_tokens"))
    for (const std::string_view tag : tool_call_markers(ctx.tool_parser))
      if (const int32_t id = ctx.tok->piece_to_id(tag); id >= 0 && ctx.tok->is_special(id))
        spec.skip_special_tokens = false;
  // Under auto, strict tools are enforced as SGLang does (a structural tag there): the model writes
  // freely, but a call it opens must be valid. Without strict tools, auto constrains nothing.
  if (choice == "auto" && strict_at.empty()) return;
  if (spec.base.constraint) {
    if (choice == "auto")
      bad_param(strict_at, fmt::format("'{}' under tool_choice auto cannot be combined with another output "
                                       "constraint (response_format, regex, ebnf)", strict_at));
    bad_param("tool_choice", fmt::format("'tool_choice' {} cannot be combined with another output constraint "
                                         "(response_format, regex, ebnf)", choice));
  }
  constrain::ToolCallSpec ts;
  switch (ctx.tool_parser) {
    case ToolCallParser::kLlama3: ts.format = constrain::ToolCallFormat::kLlama3; break;
    case ToolCallParser::kDeepSeekV3: ts.format = constrain::ToolCallFormat::kDeepSeekV3; break;
    case ToolCallParser::kDeepSeekV31: ts.format = constrain::ToolCallFormat::kDeepSeekV31; break;
    case ToolCallParser::kQwen3Coder: ts.format = constrain::ToolCallFormat::kQwen3Coder; break;
    case ToolCallParser::kGlm45: ts.format = constrain::ToolCallFormat::kGlm45; break;
    case ToolCallParser::kGlm47: ts.format = constrain::ToolCallFormat::kGlm47; break;
    case ToolCallParser::kGptOss: ts.format = constrain::ToolCallFormat::kHarmony; break;
    case ToolCallParser::kMistral: {
      // Tokenizer v11 and later have an [ARGS] token, and write each call after its own [TOOL_CALLS].
      ts.format = ctx.tok && ctx.tok->piece_to_id("[ARGS]") >= 0 ? constrain::ToolCallFormat::kMistralV11
                                                                 : constrain::ToolCallFormat::kMistral;
      // Mistral's tokenizers have the tags as control tokens: the model writes those, not their text.
      auto special = [&](std::string_view t) {
        const int32_t id = ctx.tok ? ctx.tok->piece_to_id(t) : -1;
        return id >= 0 && ctx.tok->is_special(id);
      };
      ts.special_tags = special("[TOOL_CALLS]") &&
                        (ts.format != constrain::ToolCallFormat::kMistralV11 || special("[ARGS]"));
      break;
    }
    default: ts.format = constrain::ToolCallFormat::kHermes;
  }
  std::vector<ojson> read_here;
  const std::vector<ojson>& parameters =
      spec.tool_parameters.empty() ? (read_here = written_parameters(raw_body, names.size())) : spec.tool_parameters;
  for (size_t i = 0; i < names.size(); ++i) ts.tools.push_back({names[i], parameters[i]});
  ts.only = only;
  ts.parallel = body.value("parallel_tool_calls", true);
  ts.text = choice == "auto";
  // A model that thinks first may still do so before its calls.
  ts.think = ctx.reasoning_parser == ReasoningParser::kQwen3 && !spec.reasoning_closed;
  ts.think_open = ts.think && spec.reasoning_open;
  spec.base.constraint = compile_or_400({constrain::ConstraintKind::kToolCalls, ts.to_text()}, "tools", ctx);
}

}  // namespace dpserve
