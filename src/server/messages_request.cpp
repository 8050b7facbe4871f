#include "server/messages_request.h"

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "server/anthropic_error.h"
#include "server/body_fields.h"
#include "server/openai_error.h"

namespace dpserve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// The prompt's fields (both routes) and the generation's (/v1/messages only), as Anthropic's API
// reference lists them; what this server does not implement is refused below unless it is absent or
// carries its default.
constexpr std::array<std::string_view, 10> kPromptFields = {
    "model",    "messages",      "system",        "tools",       "tool_choice",
    "thinking", "output_config", "cache_control", "mcp_servers", "context_management",
};
constexpr std::array<std::string_view, 14> kGenerationFields = {
    "max_tokens", "stop_sequences", "stream", "temperature", "top_p",         "top_k",           "metadata",
    "container",  "service_tier",   "speed",  "diagnostics", "inference_geo", "user_profile_id", "workspace_id",
};

// cache_control asks Anthropic to cache the prompt up to this block. The radix cache here keeps every
// prompt's prefix without being asked, so the request is honoured as it stands; only its form is checked.
void check_cache_control(const ojson& o, const std::string& param) {
  const ojson* cc = field(o, "cache_control");
  if (!cc) return;
  const std::string p = param.empty() ? "cache_control" : param + ".cache_control";
  if (!cc->is_object()) bad_param(p, fmt::format("'{}' must be an object", p));
  only_keys(*cc, p, {"type", "ttl"});
  if (!field(*cc, "type") || (*cc)["type"] != "ephemeral")
    bad_param(p + ".type", fmt::format("'{}.type' must be \"ephemeral\"", p));
  if (const ojson* ttl = field(*cc, "ttl"); ttl && *ttl != "5m" && *ttl != "1h")
    bad_param(p + ".ttl", fmt::format("'{}.ttl' must be \"5m\" or \"1h\"", p));
}

const ojson& need_object_with_type(const ojson& v, const std::string& param) {
  if (!v.is_object() || !field(v, "type") || !v["type"].is_string())
    bad_param(param, fmt::format("'{}' must be an object with a 'type'", param));
  return v;
}

// A text block -> the chat text part.
ojson text_part(const ojson& b, const std::string& param) {
  only_keys(b, param, {"type", "text", "cache_control", "citations"});
  check_cache_control(b, param);
  const ojson* t = field(b, "text");
  if (!t || !t->is_string()) bad_param(param + ".text", fmt::format("'{}.text' must be a string", param));
  if (const ojson* c = field(b, "citations"); c && !(c->is_array() && c->empty()))
    unsupported(param + ".citations", "citations are not produced or read here");
  return {{"type", "text"}, {"text", *t}};
}

// An image block (base64 data or a URL) -> the chat image_url part.
ojson image_part(const ojson& b, const std::string& param) {
  only_keys(b, param, {"type", "source", "cache_control"});
  check_cache_control(b, param);
  const ojson* s = field(b, "source");
  const std::string sp = param + ".source";
  if (!s) bad_param(sp, fmt::format("'{}' is required", sp));
  need_object_with_type(*s, sp);
  const std::string kind = (*s)["type"].get<std::string>();
  if (kind == "base64") {
    only_keys(*s, sp, {"type", "media_type", "data"});
    const ojson* mt = field(*s, "media_type");
    static constexpr std::array<std::string_view, 4> kTypes = {"image/jpeg", "image/png", "image/gif", "image/webp"};
    if (!mt || !mt->is_string() || std::find(kTypes.begin(), kTypes.end(), mt->get<std::string>()) == kTypes.end())
      bad_param(sp + ".media_type",
                fmt::format("'{}.media_type' must be image/jpeg, image/png, image/gif or image/webp", sp));
    const ojson* data = field(*s, "data");
    if (!data || !data->is_string()) bad_param(sp + ".data", fmt::format("'{}.data' must be a base64 string", sp));
    return {
        {"type", "image_url"},
        {"image_url", {{"url", fmt::format("data:{};base64,{}", mt->get<std::string>(), data->get<std::string>())}}}};
  }
  if (kind == "url") {
    only_keys(*s, sp, {"type", "url"});
    const ojson* u = field(*s, "url");
    if (!u || !u->is_string()) bad_param(sp + ".url", fmt::format("'{}.url' must be a string", sp));
    return {{"type", "image_url"}, {"image_url", {{"url", *u}}}};
  }
  if (kind == "file") unsupported(sp, "this server has no file store; send the image as base64 or a URL");
  bad_param(sp + ".type", fmt::format("'{}.type' must be base64 or url", sp));
}

// What the chat messages were made from, to name Anthropic's parameters in the chat parser's errors.
struct Conversion {
  ojson messages = ojson::array();
  std::vector<std::string> origin;  // per chat message: "system", "messages[3]", ...
  void add(ojson m, std::string from) {
    messages.push_back(std::move(m));
    origin.push_back(std::move(from));
  }
};

void add_tool_result(const ojson& b, const std::string& param, Conversion& conv) {
  only_keys(b, param, {"type", "tool_use_id", "content", "is_error", "cache_control"});
  check_cache_control(b, param);
  const ojson* id = field(b, "tool_use_id");
  if (!id || !id->is_string() || id->get<std::string>().empty())
    bad_param(param + ".tool_use_id", fmt::format("'{}.tool_use_id' must be a non-empty string", param));
  // is_error marks a failed tool; chat templates have no such flag, so the result's own text (which
  // says what failed) is what the model reads either way.
  if (const ojson* e = field(b, "is_error"); e && !e->is_boolean())
    bad_param(param + ".is_error", fmt::format("'{}.is_error' must be a boolean", param));
  ojson content = "";
  if (const ojson* c = field(b, "content")) {
    if (c->is_string()) {
      content = *c;
    } else if (c->is_array()) {
      content = ojson::array();
      for (size_t k = 0; k < c->size(); ++k) {
        const std::string pp = fmt::format("{}.content[{}]", param, k);
        const ojson& p = need_object_with_type((*c)[k], pp);
        if (p["type"] != "text")
          unsupported(pp, fmt::format("a tool result holds text blocks here, not '{}'", p["type"].get<std::string>()));
        content.push_back(text_part(p, pp));
      }
    } else {
      bad_param(param + ".content", fmt::format("'{}.content' must be a string or an array of blocks", param));
    }
  }
  conv.add({{"role", "tool"}, {"tool_call_id", *id}, {"content", std::move(content)}}, param);
}

void add_user(const ojson& content, const std::string& param, Conversion& conv) {
  if (content.is_string()) {
    conv.add({{"role", "user"}, {"content", content}}, param);
    return;
  }
  // tool_result blocks become tool messages, in place; the text and images around them, user messages.
  ojson parts = ojson::array();
  auto flush = [&] {
    if (!parts.empty()) conv.add({{"role", "user"}, {"content", std::exchange(parts, ojson::array())}}, param);
  };
  for (size_t k = 0; k < content.size(); ++k) {
    const std::string pp = fmt::format("{}.content[{}]", param, k);
    const ojson& b = need_object_with_type(content[k], pp);
    const std::string type = b["type"].get<std::string>();
    if (type == "text") {
      parts.push_back(text_part(b, pp));
    } else if (type == "image") {
      parts.push_back(image_part(b, pp));
    } else if (type == "tool_result") {
      flush();
      add_tool_result(b, pp, conv);
    } else if (type == "tool_use" || type == "thinking" || type == "redacted_thinking") {
      bad_param(pp + ".type", fmt::format("'{}' blocks belong to assistant messages", type));
    } else {
      unsupported(pp,
                  fmt::format("'{}' blocks are not read here (text, image and tool_result are)", type.substr(0, 40)));
    }
  }
  flush();
}

void add_assistant(const ojson& content, const std::string& param, Conversion& conv) {
  if (content.is_string()) {
    conv.add({{"role", "assistant"}, {"content", content}}, param);
    return;
  }
  ojson parts = ojson::array();
  ojson calls = ojson::array();
  std::string reasoning;
  for (size_t k = 0; k < content.size(); ++k) {
    const std::string pp = fmt::format("{}.content[{}]", param, k);
    const ojson& b = need_object_with_type(content[k], pp);
    const std::string type = b["type"].get<std::string>();
    if (type == "text") {
      parts.push_back(text_part(b, pp));
    } else if (type == "thinking") {
      // The signature vouches for Anthropic's own thinking; this server writes none and checks none.
      only_keys(b, pp, {"type", "thinking", "signature", "cache_control"});
      const ojson* t = field(b, "thinking");
      if (!t || !t->is_string()) bad_param(pp + ".thinking", fmt::format("'{}.thinking' must be a string", pp));
      if (const ojson* s = field(b, "signature"); s && !s->is_string())
        bad_param(pp + ".signature", fmt::format("'{}.signature' must be a string", pp));
      reasoning += t->get<std::string>();
    } else if (type == "tool_use") {
      only_keys(b, pp, {"type", "id", "name", "input", "cache_control", "caller"});
      check_cache_control(b, pp);
      const ojson* id = field(b, "id");
      const ojson* name = field(b, "name");
      const ojson* input = field(b, "input");
      if (!id || !id->is_string() || id->get<std::string>().empty())
        bad_param(pp + ".id", fmt::format("'{}.id' must be a non-empty string", pp));
      if (!name || !name->is_string()) bad_param(pp + ".name", fmt::format("'{}.name' must be a string", pp));
      if (!input || !input->is_object()) bad_param(pp + ".input", fmt::format("'{}.input' must be an object", pp));
      if (const ojson* c = field(b, "caller"); c && !(c->is_object() && c->value("type", "") == "direct"))
        unsupported(pp + ".caller", "only direct tool calls are made here");
      calls.push_back(
          {{"id", *id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", input->dump()}}}});
    } else if (type == "redacted_thinking") {
      unsupported(pp, "redacted thinking is Anthropic's encrypted reasoning; this model cannot read it");
    } else if (type == "tool_result" || type == "image") {
      bad_param(pp + ".type", fmt::format("'{}' blocks belong to user messages", type));
    } else {
      unsupported(pp,
                  fmt::format("'{}' blocks are not read here (text, thinking and tool_use are)", type.substr(0, 40)));
    }
  }
  ojson m{{"role", "assistant"}};
  m["content"] = parts.empty() ? ojson(nullptr) : std::move(parts);
  if (!reasoning.empty()) m["reasoning_content"] = std::move(reasoning);
  if (!calls.empty()) m["tool_calls"] = std::move(calls);
  conv.add(std::move(m), param);
}

// Custom tools -> chat function tools; Anthropic's own server tools (bash, web search, ...) are theirs.
ojson anthropic_tools_to_chat(const ojson& tools) {
  if (!tools.is_array()) bad_param("tools", "'tools' must be an array");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = fmt::format("tools[{}]", i);
    const ojson& t = tools[i];
    if (!t.is_object()) bad_param(p, fmt::format("'{}' must be an object", p));
    if (const ojson* type = field(t, "type"); type && *type != "custom")
      unsupported(p + ".type", fmt::format("'{}' is one of Anthropic's server tools; give a custom tool "
                                           "(name, description, input_schema) instead",
                                           type->is_string() ? type->get<std::string>().substr(0, 60) : "?"));
    only_keys(t, p,
              {"type", "name", "description", "input_schema", "cache_control", "strict", "defer_loading",
               "eager_input_streaming", "allowed_callers", "input_examples"});
    check_cache_control(t, p);
    if (const ojson* d = field(t, "defer_loading"); d && *d != false)
      unsupported(p + ".defer_loading", "every tool is in the prompt from the start");
    if (const ojson* e = field(t, "eager_input_streaming"); e && !e->is_boolean())
      bad_param(p + ".eager_input_streaming", fmt::format("'{}.eager_input_streaming' must be a boolean", p));
    if (const ojson* a = field(t, "allowed_callers"); a && *a != ojson::array({"direct"}))
      unsupported(p + ".allowed_callers", "only direct calls are made here");
    if (const ojson* x = field(t, "input_examples"); x && !(x->is_array() && x->empty()))
      unsupported(p + ".input_examples", "examples are not added to the prompt");
    const ojson* name = field(t, "name");
    if (!name || !name->is_string()) bad_param(p + ".name", fmt::format("'{}.name' is required (a string)", p));
    const ojson* schema = field(t, "input_schema");
    if (!schema || !schema->is_object())
      bad_param(p + ".input_schema", fmt::format("'{}.input_schema' is required (a JSON Schema object)", p));
    ojson fn{{"name", *name}};
    if (const ojson* d = field(t, "description")) fn["description"] = need_string(*d, p + ".description");
    fn["parameters"] = *schema;
    if (const ojson* s = field(t, "strict")) fn["strict"] = *s;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

// tool_choice -> chat's tool_choice and parallel_tool_calls.
void chat_tool_choice(const ojson& tc, ojson& chat) {
  need_object_with_type(tc, "tool_choice");
  const std::string type = tc["type"].get<std::string>();
  if (type == "tool") {
    only_keys(tc, "tool_choice", {"type", "name", "disable_parallel_tool_use"});
    const ojson* n = field(tc, "name");
    if (!n || !n->is_string()) bad_param("tool_choice.name", "'tool_choice.name' is required when type is \"tool\"");
    chat["tool_choice"] = {{"type", "function"}, {"function", {{"name", *n}}}};
  } else if (type == "auto" || type == "any") {
    only_keys(tc, "tool_choice", {"type", "disable_parallel_tool_use"});
    chat["tool_choice"] = type == "auto" ? "auto" : "required";
  } else if (type == "none") {
    only_keys(tc, "tool_choice", {"type"});
    chat["tool_choice"] = "none";
  } else {
    bad_param("tool_choice.type", "'tool_choice.type' must be auto, any, tool or none");
  }
  if (const ojson* d = field(tc, "disable_parallel_tool_use")) {
    if (!d->is_boolean())
      bad_param("tool_choice.disable_parallel_tool_use", "'tool_choice.disable_parallel_tool_use' must be a boolean");
    chat["parallel_tool_calls"] = !d->get<bool>();
  }
}

// thinking -> whether the template opens thinking (enable_thinking); nullopt leaves the model's default.
std::optional<bool> thinking_switch(const ojson& th, const ojson* max_tokens) {
  need_object_with_type(th, "thinking");
  const std::string type = th["type"].get<std::string>();
  if (type == "disabled") {
    only_keys(th, "thinking", {"type"});
    return false;
  }
  if (type != "enabled" && type != "adaptive")
    bad_param("thinking.type", "'thinking.type' must be enabled, adaptive or disabled");
  only_keys(th, "thinking",
            type == "enabled" ? std::initializer_list<std::string_view>{"type", "budget_tokens", "display"}
                              : std::initializer_list<std::string_view>{"type", "display"});
  if (field(th, "display"))
    unsupported("thinking.display", "thinking is returned as the model wrote it, neither summarized nor omitted");
  if (type == "enabled") {
    // Anthropic's own rules for the budget, which the engine enforces (engine/think_budget.h).
    const ojson* b = field(th, "budget_tokens");
    if (!b || !b->is_number_integer() || b->get<int64_t>() < 1024)
      bad_param("thinking.budget_tokens", "'thinking.budget_tokens' must be an integer >= 1024");
    if (max_tokens && max_tokens->is_number_integer() && b->get<int64_t>() >= max_tokens->get<int64_t>())
      bad_param("thinking.budget_tokens", "'thinking.budget_tokens' must be less than 'max_tokens'");
  }
  return true;
}

// output_config -> response_format (format) ; effort has no meaning for this model.
ojson chat_response_format(const ojson& oc) {
  if (!oc.is_object()) bad_param("output_config", "'output_config' must be an object");
  only_keys(oc, "output_config", {"format", "effort"});
  if (field(oc, "effort")) unsupported("output_config.effort", "this model has no effort levels");
  const ojson* f = field(oc, "format");
  if (!f) return nullptr;
  need_object_with_type(*f, "output_config.format");
  only_keys(*f, "output_config.format", {"type", "schema"});
  if ((*f)["type"] != "json_schema")
    bad_param("output_config.format.type", "'output_config.format.type' must be json_schema");
  const ojson* s = field(*f, "schema");
  if (!s) bad_param("output_config.format.schema", "'output_config.format.schema' is required");
  return {{"type", "json_schema"}, {"json_schema", {{"name", "output"}, {"schema", *s}}}};
}

// The chat parser's parameter names -> the Messages request's; chat message k -> where it came from.
std::string rename(std::string s, const std::vector<std::string>& origin, bool whole_param) {
  static const std::vector<std::pair<std::string, std::string>> kMap = {
      {"max_completion_tokens", "max_tokens"},
      {"response_format.json_schema.schema", "output_config.format.schema"},
      {"response_format.json_schema", "output_config.format"},
      {"response_format", "output_config.format"},
      {"chat_template_kwargs.enable_thinking", "thinking"},
      {"chat_template_kwargs", "thinking"},
      {"continue_final_message", "messages"},
      {".function.parameters", ".input_schema"},
      {".function.", "."},
      {"/v1/chat/completions", "/v1/messages"},
  };
  for (const auto& [from, to] : kMap)
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
      s.replace(at, from.size(), to);
  if (whole_param && s == "stop") s = "stop_sequences";
  // messages[k] (a chat message) -> the system prompt or messages[j] (j: the Anthropic message).
  for (size_t at = s.find("messages["); at != std::string::npos; at = s.find("messages[", at + 1)) {
    const size_t close = s.find(']', at);
    if (close == std::string::npos) break;
    const std::string digits = s.substr(at + 9, close - at - 9);
    if (digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    const size_t k = std::stoul(digits);
    if (k >= origin.size()) continue;
    s.replace(at, close + 1 - at, origin[k]);
    at += origin[k].size() - 1;
  }
  return s;
}

}  // namespace

bool is_messages_field(std::string_view name, bool count_tokens) {
  if (std::find(kPromptFields.begin(), kPromptFields.end(), name) != kPromptFields.end()) return true;
  return !count_tokens &&
         std::find(kGenerationFields.begin(), kGenerationFields.end(), name) != kGenerationFields.end();
}

MessagesRequest parse_messages_request(const json& body, std::string_view raw_body, const ParseContext& ctx,
                                       bool count_tokens) {
  MessagesRequest mr;
  // The body as written (key order kept: JSON Schemas are generated in the order they declare).
  const ojson b = ojson::parse(raw_body.empty() ? std::string_view(body.dump()) : raw_body);
  if (!b.is_object()) bad_param("", "the request body must be a JSON object");
  for (const auto& [k, v] : b.items())
    if (!is_messages_field(k, count_tokens))
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", k), k, "", "unknown_parameter");

  // Anthropic's platform features: accepted only where they ask for nothing this server would do differently.
  auto refuse_unless = [&](const char* name, std::initializer_list<ojson> fine, const char* why) {
    const ojson* v = field(b, name);
    if (!v) return;
    for (const auto& f : fine)
      if (*v == f) return;
    unsupported(name, why);
  };
  refuse_unless("container", {}, "there are no code-execution containers here");
  refuse_unless("mcp_servers", {ojson::array()}, "this server connects to no MCP servers; give the tools as tools");
  refuse_unless("context_management", {}, "the context is never edited; a prompt beyond it is a 400");
  refuse_unless("diagnostics", {}, "there are no diagnostics to report");
  refuse_unless("inference_geo", {}, "this server runs where it runs");
  refuse_unless("service_tier", {"auto", "standard_only"}, "there is one tier");
  refuse_unless("speed", {"standard"}, "there is one speed");
  refuse_unless("user_profile_id", {}, "there are no user profiles here");
  refuse_unless("workspace_id", {}, "there are no workspaces here");
  check_cache_control(b, "");
  if (const ojson* m = field(b, "metadata")) {
    if (!m->is_object()) bad_param("metadata", "'metadata' must be an object");
    only_keys(*m, "metadata", {"user_id"});
    if (const ojson* u = field(*m, "user_id")) need_string(*u, "metadata.user_id");
  }

  const ojson* model = field(b, "model");
  if (!model) bad_param("model", "'model' is required");
  need_string(*model, "model");
  const ojson* max_tokens = field(b, "max_tokens");
  if (!count_tokens) {
    if (!max_tokens) bad_param("max_tokens", "'max_tokens' is required");
    if (!max_tokens->is_number_integer() || max_tokens->get<int64_t>() < 1)
      bad_param("max_tokens", "'max_tokens' must be an integer >= 1");
  }
  if (const ojson* s = field(b, "stream")) {
    if (!s->is_boolean()) bad_param("stream", "'stream' must be a boolean");
    mr.stream = s->get<bool>();
  }
  std::vector<std::string> stop_sequences;
  if (const ojson* ss = field(b, "stop_sequences")) {
    if (!ss->is_array()) bad_param("stop_sequences", "'stop_sequences' must be an array of strings");
    // More than chat's four: the stop matcher's cost grows with their total length, bounded by the body.
    for (size_t i = 0; i < ss->size(); ++i) {
      const std::string p = fmt::format("stop_sequences[{}]", i);
      const std::string s = need_string((*ss)[i], p);
      if (s.empty()) bad_param(p, fmt::format("'{}' must not be empty", p));
      stop_sequences.push_back(s);
    }
  }
  if (const ojson* t = field(b, "temperature");
      t && (!t->is_number() || t->get<double>() < 0.0 || t->get<double>() > 1.0))
    bad_param("temperature", "'temperature' must be a number from 0 to 1");

  Conversion conv;
  if (const ojson* sys = field(b, "system")) {
    if (sys->is_string()) {
      conv.add({{"role", "system"}, {"content", *sys}}, "system");
    } else if (sys->is_array()) {
      ojson parts = ojson::array();
      for (size_t k = 0; k < sys->size(); ++k) {
        const std::string pp = fmt::format("system[{}]", k);
        const ojson& blk = need_object_with_type((*sys)[k], pp);
        if (blk["type"] != "text") bad_param(pp + ".type", fmt::format("'{}.type' must be text", pp));
        parts.push_back(text_part(blk, pp));
      }
      if (!parts.empty()) conv.add({{"role", "system"}, {"content", std::move(parts)}}, "system");
    } else {
      bad_param("system", "'system' must be a string or an array of text blocks");
    }
  }
  const ojson* msgs = field(b, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty()) bad_param("messages", "'messages' must be a non-empty array");
  std::string last_role;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const std::string p = fmt::format("messages[{}]", i);
    const ojson& m = (*msgs)[i];
    if (!m.is_object()) bad_param(p, fmt::format("'{}' must be an object", p));
    only_keys(m, p, {"role", "content"});
    const ojson* role = field(m, "role");
    if (!role || (*role != "user" && *role != "assistant"))
      bad_param(p + ".role", fmt::format("'{}.role' must be user or assistant (the system prompt is 'system')", p));
    const ojson* content = field(m, "content");
    if (!content || !(content->is_string() || content->is_array()))
      bad_param(p + ".content", fmt::format("'{}.content' must be a string or an array of content blocks", p));
    last_role = role->get<std::string>();
    if (last_role == "user")
      add_user(*content, p, conv);
    else
      add_assistant(*content, p, conv);
  }

  ojson chat = ojson::object();
  chat["model"] = *model;
  chat["messages"] = conv.messages;
  // A final assistant message is a prefill: the answer continues it (Anthropic's "putting words in
  // Claude's mouth").
  if (last_role == "assistant") {
    chat["continue_final_message"] = true;
    chat["add_generation_prompt"] = false;
  }
  chat["max_completion_tokens"] = count_tokens ? ojson(1) : *max_tokens;
  if (!count_tokens) {
    for (const char* k : {"temperature", "top_p", "top_k"})
      if (const ojson* v = field(b, k)) chat[k] = *v;
    if (const ojson* m = field(b, "metadata"))
      if (const ojson* u = field(*m, "user_id")) chat["user"] = *u;
  }
  if (const ojson* t = field(b, "tools")) chat["tools"] = anthropic_tools_to_chat(*t);
  if (const ojson* tc = field(b, "tool_choice")) chat_tool_choice(*tc, chat);
  std::optional<bool> think;
  if (const ojson* th = field(b, "thinking")) think = thinking_switch(*th, max_tokens);
  if (think) chat["chat_template_kwargs"] = {{"enable_thinking", *think}};
  if (think == true) {
    // Thinking blocks are what the reasoning parser splits off; without it they would be text.
    if (ctx.reasoning_parser == ReasoningParser::kNone)
      bad_param("thinking", "thinking needs a server started with --reasoning-parser (without it the thinking "
                            "cannot be told from the answer)");
    if (const ojson* bt = field(*field(b, "thinking"), "budget_tokens")) {
      if (ctx.think.close_id < 0)
        bad_param("thinking.budget_tokens", "'thinking.budget_tokens' needs <think> and </think> as single tokens; "
                                            "this model's vocabulary has none");
      chat["thinking_token_budget"] = *bt;
    }
  }
  if (const ojson* oc = field(b, "output_config"))
    if (ojson rf = chat_response_format(*oc); !rf.is_null()) chat["response_format"] = std::move(rf);

  const std::string chat_text = chat.dump();
  try {
    mr.spec = parse_chat_request(json::parse(chat_text), ctx, chat_text);
  } catch (const ApiError& e) {
    if (e.code() == "context_length_exceeded") {
      const std::string m = anthropic_context_message(e.what());
      // Anthropic's words, as they are (no parameter in front): clients match on them.
      if (m != e.what()) throw ApiError(e.status(), m, "", e.type(), e.code());
    }
    throw ApiError(e.status(), rename(e.what(), conv.origin, false), rename(e.param(), conv.origin, true), e.type(),
                   e.code());
  }
  if (think == false && !mr.spec.reasoning_closed && ctx.reasoning_parser != ReasoningParser::kNone)
    unsupported("thinking", "this model's chat template cannot turn thinking off (it has no enable_thinking)");
  mr.spec.stop = std::move(stop_sequences);
  return mr;
}

}  // namespace dpserve
