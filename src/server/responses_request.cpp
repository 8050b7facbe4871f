#include "server/responses_request.h"

#include <algorithm>
#include <array>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "server/base64.h"
#include "server/body_fields.h"
#include "server/openai_error.h"

namespace dpserve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// Every top-level field of OpenAI's Responses create request; the ones this server does not
// implement are refused below unless they carry their default.
constexpr std::array<std::string_view, 26> kFields = {
    "model",          "input",          "instructions",   "previous_response_id", "store",
    "stream",         "stream_options", "tools",          "tool_choice",          "parallel_tool_calls",
    "text",           "max_output_tokens", "temperature", "top_p",                "metadata",
    "user",           "reasoning",      "include",        "truncation",           "background",
    "service_tier",   "prompt_cache_key", "safety_identifier", "top_logprobs",    "max_tool_calls",
    "prompt",
};

// A message's content as the Responses API writes it -> one of our normalized forms: a string, or
// a list of {"type": "input_text"|"output_text", "text"} / {"type": "input_image", "image_url", "detail"}.
ojson message_content(const ojson& c, const std::string& param, const std::string& role) {
  if (c.is_string()) return c;
  if (!c.is_array()) bad_param(param, fmt::format("'{}' must be a string or an array of content parts", param));
  ojson parts = ojson::array();
  for (size_t k = 0; k < c.size(); ++k) {
    const ojson& p = c[k];
    const std::string pp = fmt::format("{}[{}]", param, k);
    if (!p.is_object() || !field(p, "type") || !p["type"].is_string())
      bad_param(pp, fmt::format("'{}' must be an object with a 'type'", pp));
    const std::string type = p["type"].get<std::string>();
    if (type == "input_text" || type == "output_text") {
      only_keys(p, pp, {"type", "text", "annotations", "logprobs"});
      const ojson* t = field(p, "text");
      if (!t || !t->is_string()) bad_param(pp + ".text", fmt::format("'{}.text' must be a string", pp));
      for (const char* k2 : {"annotations", "logprobs"})
        if (const ojson* a = field(p, k2); a && !(a->is_array() && a->empty()))
          unsupported(pp + "." + k2, "only an empty list is accepted");
      parts.push_back({{"type", type}, {"text", *t}});
    } else if (type == "refusal") {
      only_keys(p, pp, {"type", "refusal"});
      const ojson* t = field(p, "refusal");
      if (!t || !t->is_string()) bad_param(pp + ".refusal", fmt::format("'{}.refusal' must be a string", pp));
      parts.push_back({{"type", "output_text"}, {"text", *t}});
    } else if (type == "input_image") {
      only_keys(p, pp, {"type", "image_url", "detail", "file_id"});
      const ojson* u = field(p, "image_url");
      const ojson* f = field(p, "file_id");
      if (u && f) bad_param(pp + ".file_id", fmt::format("'{}' takes 'image_url' or 'file_id', not both", pp));
      ojson part{{"type", "input_image"}};
      if (f) {
        // A file of the Files API (purpose "vision"), read when the request runs (a stored
        // conversation keeps the id, as OpenAI's does).
        if (!f->is_string() || f->get_ref<const std::string&>().empty())
          bad_param(pp + ".file_id", fmt::format("'{}.file_id' must be a file id", pp));
        part["file_id"] = *f;
      } else if (!u || !u->is_string()) {
        bad_param(pp + ".image_url", fmt::format("'{}.image_url' must be a string (a data: or http(s) URL)", pp));
      } else {
        part["image_url"] = *u;
      }
      if (const ojson* d = field(p, "detail")) part["detail"] = *d;
      parts.push_back(std::move(part));
    } else if (type == "input_file" || type == "input_audio") {
      unsupported(pp + ".type", fmt::format("'{}' content is not accepted (text and images are)", type));
    } else {
      bad_param(pp + ".type", fmt::format("'{}.type' must be input_text, output_text, refusal or input_image; got '{}'",
                                          pp, type.substr(0, 40)));
    }
    if (role == "assistant" && type == "input_image")
      bad_param(pp + ".type", fmt::format("'{}': an assistant message cannot carry images", pp));
  }
  return parts;
}

// One input item, checked and written back in the shape this server stores and replays.
ojson normalize_item_body(const ojson& it, const std::string& param) {
  if (!it.is_object()) bad_param(param, fmt::format("'{}' must be an object", param));
  std::string type = "message";
  if (const ojson* t = field(it, "type")) type = need_string(*t, param + ".type");
  if (type == "message") {
    only_keys(it, param, {"type", "role", "content", "id", "status"});
    const ojson* role = field(it, "role");
    if (!role || !role->is_string()) bad_param(param + ".role", fmt::format("'{}.role' is required", param));
    const std::string r = role->get<std::string>();
    if (r != "user" && r != "assistant" && r != "system" && r != "developer")
      bad_param(param + ".role",
                fmt::format("'{}.role' must be user, assistant, system or developer; got '{}'", param, r.substr(0, 40)));
    const ojson* content = field(it, "content");
    if (!content) bad_param(param + ".content", fmt::format("'{}.content' is required", param));
    return {{"type", "message"}, {"role", r}, {"content", message_content(*content, param + ".content", r)}};
  }
  if (type == "function_call") {
    only_keys(it, param, {"type", "call_id", "name", "arguments", "id", "status"});
    ojson out{{"type", "function_call"}};
    for (const char* k : {"call_id", "name", "arguments"}) {
      const ojson* v = field(it, k);
      if (!v || !v->is_string())
        bad_param(param + "." + k, fmt::format("'{}.{}' is required and must be a string", param, k));
      out[k] = *v;
    }
    return out;
  }
  if (type == "function_call_output") {
    only_keys(it, param, {"type", "call_id", "output", "id", "status"});
    const ojson* call = field(it, "call_id");
    if (!call || !call->is_string())
      bad_param(param + ".call_id", fmt::format("'{}.call_id' is required and must be a string", param));
    const ojson* output = field(it, "output");
    std::string text;
    if (output && output->is_string()) {
      text = output->get<std::string>();
    } else if (output && output->is_array()) {  // a list of input_text parts
      for (size_t k = 0; k < output->size(); ++k) {
        const ojson& p = (*output)[k];
        const std::string pp = fmt::format("{}.output[{}]", param, k);
        if (!p.is_object() || p.value("type", "") != "input_text" || !field(p, "text") || !p["text"].is_string())
          bad_param(pp, fmt::format("'{}' must be {{\"type\": \"input_text\", \"text\": ...}}", pp));
        only_keys(p, pp, {"type", "text"});
        text += p["text"].get<std::string>();
      }
    } else {
      bad_param(param + ".output", fmt::format("'{}.output' is required: a string or a list of input_text parts", param));
    }
    return {{"type", "function_call_output"}, {"call_id", *call}, {"output", text}};
  }
  if (type == "reasoning") {
    only_keys(it, param, {"type", "id", "summary", "content", "encrypted_content", "status"});
    if (field(it, "encrypted_content"))
      unsupported(param + ".encrypted_content", "this server neither makes nor reads encrypted reasoning");
    std::string text;
    // The model's own words (content) if the client kept them, else its summary.
    for (const char* k : {"content", "summary"}) {
      const ojson* list = field(it, k);
      if (!list) continue;
      if (!list->is_array()) bad_param(param + "." + k, fmt::format("'{}.{}' must be an array", param, k));
      std::string t;
      for (size_t j = 0; j < list->size(); ++j) {
        const ojson& p = (*list)[j];
        const std::string pp = fmt::format("{}.{}[{}]", param, k, j);
        if (!p.is_object() || !field(p, "text") || !p["text"].is_string())
          bad_param(pp, fmt::format("'{}' must be an object with a string 'text'", pp));
        t += p["text"].get<std::string>();
      }
      if (text.empty()) text = t;
    }
    return {{"type", "reasoning"}, {"content", ojson::array({{{"type", "reasoning_text"}, {"text", text}}})}};
  }
  if (type == "item_reference")
    unsupported(param + ".type", "item references are not resolved; send the item itself or use previous_response_id");
  unsupported(param + ".type", fmt::format("input items of type '{}' (message, function_call, function_call_output "
                                           "and reasoning are)",
                                           type.substr(0, 40)));
}

// A client's item id is kept (GET .../input_items lists it and pages by it); the server gives one to
// items that come without.
ojson normalize_item(const ojson& it, const std::string& param) {
  ojson out = normalize_item_body(it, param);
  if (const ojson* id = field(it, "id")) out["id"] = need_string(*id, param + ".id");
  return out;
}

// An input_image's file as the data: URL the image path reads: PNG or JPEG by its first bytes.
std::string file_image_url(const std::string& id, const FileContent& file_content, const ImageOptions* images) {
  const std::shared_ptr<const std::string> bytes = file_content ? file_content(id) : nullptr;
  if (!bytes)
    throw ApiError(400, fmt::format("No such File object: {} (an input_image file_id)", id.substr(0, 80)), "input",
                   "invalid_request_error", "file_not_found");
  const std::string& b = *bytes;
  // Checked before the file is encoded for the image path, which would refuse it only after.
  if (!images || !images->tokens.takes_images())
    bad_param("input", "This model takes no images (an input_image file_id)");
  if (b.size() > images->max_bytes)
    bad_param("input", fmt::format("File {} is {} bytes; an image is at most {} (--max-image-bytes)", id.substr(0, 80),
                                   b.size(), images->max_bytes));
  const char* mime = b.rfind("\x89PNG\r\n\x1a\n", 0) == 0 ? "image/png"
                     : b.rfind("\xff\xd8\xff", 0) == 0    ? "image/jpeg"
                                                          : nullptr;
  if (!mime)
    bad_param("input", fmt::format("File {} is not a PNG or JPEG image (an input_image file_id)", id.substr(0, 80)));
  return fmt::format("data:{};base64,{}", mime, base64_encode(b));
}

// Stored / normalized items -> chat messages for the chat template. Function calls join the
// assistant turn before them (a turn is its text then its calls), reasoning joins the next one.
ojson items_to_messages(const ojson& items, const FileContent& file_content, const ImageOptions* images) {
  ojson msgs = ojson::array();
  std::string reasoning;
  auto new_assistant = [&](ojson content) {
    ojson m{{"role", "assistant"}, {"content", std::move(content)}};
    if (!reasoning.empty()) m["reasoning_content"] = std::exchange(reasoning, {});
    msgs.push_back(std::move(m));
  };
  for (const ojson& it : items) {
    const std::string type = it["type"].get<std::string>();
    if (type == "message") {
      std::string role = it["role"].get<std::string>();
      if (role == "developer") role = "system";  // chat templates know system, not developer
      ojson content;
      const ojson& c = it["content"];
      if (c.is_string()) {
        content = c;
      } else {
        ojson parts = ojson::array();
        for (const ojson& p : c) {
          if (p["type"] == "input_image") {
            ojson iu{{"url", p.contains("file_id") ? ojson(file_image_url(p["file_id"], file_content, images))
                                                   : p["image_url"]}};
            if (p.contains("detail")) iu["detail"] = p["detail"];
            parts.push_back({{"type", "image_url"}, {"image_url", iu}});
          } else {
            parts.push_back({{"type", "text"}, {"text", p["text"]}});
          }
        }
        content = std::move(parts);
      }
      if (role == "assistant") {
        new_assistant(std::move(content));
      } else {
        // Reasoning that no assistant text or call followed (a response cut short while thinking)
        // is still that turn's: it becomes an assistant message of its own.
        if (!reasoning.empty()) new_assistant("");
        msgs.push_back({{"role", role}, {"content", std::move(content)}});
      }
    } else if (type == "function_call") {
      if (msgs.empty() || msgs.back()["role"] != "assistant" || !reasoning.empty()) new_assistant("");
      ojson& m = msgs.back();
      if (!m.contains("tool_calls")) m["tool_calls"] = ojson::array();
      m["tool_calls"].push_back({{"id", it["call_id"]}, {"type", "function"},
                                 {"function", {{"name", it["name"]}, {"arguments", it["arguments"]}}}});
    } else if (type == "function_call_output") {
      if (!reasoning.empty()) new_assistant("");
      msgs.push_back({{"role", "tool"}, {"tool_call_id", it["call_id"]}, {"content", it["output"]}});
    } else if (type == "reasoning") {
      for (const ojson& p : it["content"]) reasoning += p["text"].get<std::string>();
    }
  }
  if (!reasoning.empty()) new_assistant("");
  return msgs;
}

// Responses' flat function tools -> chat tools.
ojson responses_tools_to_chat(const ojson& tools) {
  if (!tools.is_array()) bad_param("tools", "'tools' must be an array of {\"type\": \"function\", \"name\": ...}");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    const std::string p = fmt::format("tools[{}]", i);
    if (!t.is_object() || !field(t, "type") || !t["type"].is_string())
      bad_param(p, fmt::format("'{}' must be an object with a 'type'", p));
    const std::string type = t["type"].get<std::string>();
    if (type != "function")
      unsupported(p + ".type", fmt::format("tools of type '{}' (only function tools run here)", type.substr(0, 40)));
    only_keys(t, p, {"type", "name", "description", "parameters", "strict"});
    ojson f = ojson::object();
    for (const auto& [k, v] : t.items())
      if (k != "type" && !v.is_null()) f[k] = v;
    out.push_back({{"type", "function"}, {"function", std::move(f)}});
  }
  return out;
}

ojson chat_tool_choice(const ojson& c) {
  if (c.is_string()) return c;  // none / auto / required: the chat parser checks the word
  if (c.is_object() && c.value("type", "") == "function") {
    only_keys(c, "tool_choice", {"type", "name"});
    const ojson* name = field(c, "name");
    if (!name || !name->is_string()) bad_param("tool_choice.name", "'tool_choice.name' must be a string");
    return {{"type", "function"}, {"function", {{"name", *name}}}};
  }
  if (c.is_object() && c.contains("type") && c["type"].is_string())
    unsupported("tool_choice", fmt::format("tool_choice of type '{}' (none, auto, required or a function are)",
                                           c["type"].get<std::string>().substr(0, 40)));
  bad_param("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"name\": ...}");
}

// text.format -> response_format; null when plain text.
ojson chat_response_format(const ojson& text, json& echo) {
  if (!text.is_object()) bad_param("text", "'text' must be an object");
  only_keys(text, "text", {"format", "verbosity"});
  if (const ojson* v = field(text, "verbosity"); v && *v != "medium")
    unsupported("text.verbosity", "the model's verbosity cannot be set (only \"medium\", the default, is accepted)");
  const ojson* f = field(text, "format");
  if (!f) return nullptr;
  if (!f->is_object() || !field(*f, "type") || !(*f)["type"].is_string())
    bad_param("text.format", "'text.format' must be an object with a 'type' (text, json_object or json_schema)");
  const std::string type = (*f)["type"].get<std::string>();
  echo["text"] = {{"format", json::parse(f->dump())}};
  if (type == "text") {
    only_keys(*f, "text.format", {"type"});
    return nullptr;
  }
  if (type == "json_object") {
    only_keys(*f, "text.format", {"type"});
    return {{"type", "json_object"}};
  }
  if (type != "json_schema")
    bad_param("text.format.type", fmt::format("'text.format.type' must be text, json_object or json_schema; got '{}'",
                                              type.substr(0, 40)));
  only_keys(*f, "text.format", {"type", "name", "schema", "strict", "description"});
  ojson js = ojson::object();
  for (const auto& [k, v] : f->items())
    if (k != "type") js[k] = v;
  if (!js.contains("schema")) bad_param("text.format.schema", "'text.format.schema' is required for json_schema");
  return {{"type", "json_schema"}, {"json_schema", std::move(js)}};
}

// truncation "auto": the conversation did not fit the context (with the output's room), so its
// oldest items go, whole turns at a time (a truncated conversation starts at a user message, as a
// template expects, with every call still before its output): the fewest that make it fit, found by
// bisection over the places a turn starts. When even the last turn alone does not fit, its error.
GenSpec parse_truncated(const ojson& conversation, const std::function<GenSpec(size_t)>& parse_from) {
  std::vector<size_t> starts;
  for (size_t i = 1; i < conversation.size(); ++i) {
    const ojson& it = conversation[i];
    if (it.value("type", std::string("message")) == "message" && it.value("role", std::string()) == "user")
      starts.push_back(i);
  }
  std::optional<GenSpec> fits;
  std::optional<ApiError> last;
  size_t lo = 0, hi = starts.size();  // the answer is the first start in [lo, hi) that fits
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    try {
      fits = parse_from(starts[mid]);
      hi = mid;
    } catch (const ApiError& e) {
      if (e.code() != "context_length_exceeded") throw;
      last = e;
      lo = mid + 1;
    }
  }
  // Each success narrowed hi to its own start, so the latest one is at lo.
  if (fits) return std::move(*fits);
  if (last) throw *last;
  return parse_from(0);  // no turn to drop: the first error again
}

// The chat parser names chat parameters; a Responses client sent others.
std::string responses_param(const std::string& p) {
  static const std::vector<std::pair<std::string, std::string>> kMap = {
      {"response_format.json_schema.", "text.format."},
      {"response_format.json_schema", "text.format"},
      {"response_format", "text.format"},
      {"max_completion_tokens", "max_output_tokens"},
      {"messages", "input"},
      {"reasoning_effort", "reasoning.effort"},
  };
  for (const auto& [from, to] : kMap)
    if (p.rfind(from, 0) == 0) return from == "messages" ? "input" : to + p.substr(from.size());
  if (p.rfind("tools[", 0) == 0) {
    const size_t f = p.find("].function");
    if (f != std::string::npos) return p.substr(0, f + 1) + p.substr(f + 10);
  }
  return p;
}

std::string responses_message(std::string m) {
  static const std::vector<std::pair<std::string, std::string>> kMap = {
      {"response_format.json_schema.", "text.format."},
      {"'response_format'", "'text.format'"},
      {"max_completion_tokens", "max_output_tokens"},
      {"'messages'", "'input'"},
      {"'reasoning_effort'", "'reasoning.effort'"},
      {"/v1/chat/completions", "/v1/responses"},
  };
  for (const auto& [from, to] : kMap)
    for (size_t at = m.find(from); at != std::string::npos; at = m.find(from, at + to.size()))
      m.replace(at, from.size(), to);
  return m;
}

}  // namespace

bool is_responses_field(std::string_view name) {
  return name == "conversation" || std::find(kFields.begin(), kFields.end(), name) != kFields.end();
}

ojson normalize_input_item(const ojson& item, const std::string& param) { return normalize_item(item, param); }

bool is_input_tokens_field(std::string_view name) {
  static constexpr std::array<std::string_view, 11> kCount = {
      "model", "input", "instructions", "previous_response_id", "tools", "tool_choice", "parallel_tool_calls",
      "text", "reasoning", "truncation", "conversation"};
  return std::find(kCount.begin(), kCount.end(), name) != kCount.end();
}

ResponsesRequest parse_responses_request(
    const json& body, std::string_view raw_body, const ParseContext& ctx,
    const std::function<std::optional<ojson>(const std::string&)>& previous,
    const std::function<std::optional<ojson>(const std::string&)>& conversation_items,
    const FileContent& file_content) {
  ResponsesRequest rr;
  // The body as written (key order kept: JSON Schemas are generated in the order they declare).
  const ojson b = ojson::parse(raw_body.empty() ? std::string_view(body.dump()) : raw_body);
  for (const auto& [k, v] : b.items())
    if (!is_responses_field(k))
      throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", k), k, "", "unknown_parameter");

  // Fields this server does not implement: accepted only with their default (or empty) value.
  auto is_default = [&](const char* name, std::initializer_list<ojson> defaults) {
    const ojson* v = field(b, name);
    if (!v) return true;
    for (const auto& d : defaults)
      if (*v == d) return true;
    return false;
  };
  bool truncate_auto = false;
  if (const ojson* t = field(b, "truncation")) {
    if (*t != "auto" && *t != "disabled") bad_param("truncation", "'truncation' must be \"auto\" or \"disabled\"");
    truncate_auto = *t == "auto";
  }
  if (!is_default("service_tier", {"auto", "default"})) unsupported("service_tier", "there is one tier");
  // Log probabilities are reported when `include` asks for them (OpenAI's and vLLM's rule), with
  // top_logprobs alternatives at each position.
  int64_t top_logprobs = 0;
  if (const ojson* t = field(b, "top_logprobs"); t && !t->is_null()) {
    if (!t->is_number_integer() || t->get<int64_t>() < 0 || t->get<int64_t>() > RequestLimits::kMaxTopLogprobs)
      bad_param("top_logprobs",
                fmt::format("'top_logprobs' must be an integer in [0, {}]", RequestLimits::kMaxTopLogprobs));
    top_logprobs = t->get<int64_t>();
  }
  // max_tool_calls bounds the calls of built-in tools (OpenAI's definition); this server runs none, so
  // any bound holds. Function calls are the client's to run: it is not theirs.
  if (const ojson* m = field(b, "max_tool_calls"); m && (!m->is_number_integer() || m->get<int64_t>() < 1))
    bad_param("max_tool_calls", "'max_tool_calls' must be a positive integer");
  if (!is_default("prompt", {})) unsupported("prompt", "there are no stored prompt templates");
  if (const ojson* inc = field(b, "include")) {
    if (!inc->is_array()) bad_param("include", "'include' must be an array");
    for (size_t i = 0; i < inc->size(); ++i) {
      if ((*inc)[i] == "message.output_text.logprobs") {
        rr.logprobs = true;
        continue;
      }
      unsupported(fmt::format("include[{}]", i),
                  fmt::format("'{}' is not produced here", (*inc)[i].is_string() ? (*inc)[i].get<std::string>() : "?"));
    }
  }
  // reasoning.effort is chat's reasoning_effort: the template's variable and its enable_thinking.
  ojson effort;
  if (const ojson* r = field(b, "reasoning")) {
    if (!r->is_object()) bad_param("reasoning", "'reasoning' must be an object");
    only_keys(*r, "reasoning", {"effort", "summary", "generate_summary"});
    for (const auto& [k, v] : r->items()) {
      if (v.is_null()) continue;
      if (k == "effort") {
        effort = v;
        continue;
      }
      unsupported("reasoning." + k, "reasoning is returned as the model wrote it, not summarized");
    }
  }
  for (const char* k : {"prompt_cache_key", "safety_identifier", "user"})
    if (const ojson* v = field(b, k)) need_string(*v, k);
  if (const ojson* m = field(b, "metadata")) check_metadata(*m);
  if (const ojson* s = field(b, "store")) {
    if (!s->is_boolean()) bad_param("store", "'store' must be a boolean");
    rr.store = s->get<bool>();
  }
  if (const ojson* s = field(b, "stream")) {
    if (!s->is_boolean()) bad_param("stream", "'stream' must be a boolean");
    rr.stream = s->get<bool>();
  }
  if (const ojson* bg = field(b, "background")) {
    if (!bg->is_boolean()) bad_param("background", "'background' must be a boolean");
    rr.background = bg->get<bool>();
    // The run is found again by its id in the store, so it must be kept there (OpenAI's rule too).
    if (rr.background && !rr.store) bad_param("background", "'background' needs 'store' to be true");
  }
  if (const ojson* so = field(b, "stream_options")) {
    if (!rr.stream) bad_param("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (!so->is_object()) bad_param("stream_options", "'stream_options' must be an object");
    only_keys(*so, "stream_options", {"include_obfuscation"});
    if (const ojson* o = field(*so, "include_obfuscation"); o && *o != false)
      unsupported("stream_options.include_obfuscation", "events carry no obfuscation padding (send false)");
  }

  // The conversation: a conversation's items or the previous response's, then this request's input items.
  if (const ojson* cv = field(b, "conversation")) {
    if (cv->is_string()) {
      rr.conversation_id = cv->get<std::string>();
    } else if (cv->is_object() && cv->size() == 1 && cv->contains("id") && (*cv)["id"].is_string()) {
      rr.conversation_id = (*cv)["id"].get<std::string>();
    } else {
      bad_param("conversation", "'conversation' must be a conversation id or {\"id\": <conversation id>}");
    }
    if (field(b, "previous_response_id"))
      bad_param("previous_response_id", "'previous_response_id' cannot be used with 'conversation'");
    std::optional<ojson> items = conversation_items ? conversation_items(rr.conversation_id) : std::nullopt;
    if (!items)
      throw ApiError(404, fmt::format("Conversation with id '{}' not found.", rr.conversation_id.substr(0, 80)),
                     "conversation", "invalid_request_error", "not_found");
    rr.conversation = std::move(*items);
    rr.conversation_prefix = rr.conversation.size();
  }
  if (const ojson* prev = field(b, "previous_response_id")) {
    rr.previous_response_id = need_string(*prev, "previous_response_id");
    std::optional<ojson> conv = previous(rr.previous_response_id);
    if (!conv)
      throw ApiError(400, fmt::format("Previous response with id '{}' not found.", rr.previous_response_id),
                     "previous_response_id", "invalid_request_error", "previous_response_not_found");
    rr.conversation = std::move(*conv);
  }
  const ojson* input = field(b, "input");
  if (!input) bad_param("input", "'input' is required");
  if (input->is_string()) {
    rr.conversation.push_back({{"type", "message"}, {"role", "user"}, {"content", *input}});
  } else if (input->is_array()) {
    if (input->empty()) bad_param("input", "'input' must not be an empty array");
    for (size_t i = 0; i < input->size(); ++i)
      rr.conversation.push_back(normalize_item((*input)[i], fmt::format("input[{}]", i)));
  } else {
    bad_param("input", "'input' must be a string or an array of input items");
  }
  // Item ids name one item each: OpenAI refuses a repeat (e.g. an output item sent again as input
  // alongside previous_response_id), and input_items pages by them.
  std::unordered_set<std::string> ids;
  for (const ojson& it : rr.conversation)
    if (it.contains("id") && !ids.insert(it["id"].get<std::string>()).second)
      bad_param("input", fmt::format("Duplicate item found with id '{}'", it["id"].get<std::string>().substr(0, 80)));

  ojson chat = ojson::object();
  if (const ojson* m = field(b, "model")) chat["model"] = *m;
  // The chat messages of the conversation from item `from` on. Instructions lead this request only:
  // they are not part of the conversation a later one continues, and never truncated.
  auto messages_from = [&](size_t from) {
    ojson messages = ojson::array();
    if (const ojson* ins = field(b, "instructions"))
      messages.push_back({{"role", "system"}, {"content", need_string(*ins, "instructions")}});
    ojson items = ojson::array();
    for (size_t i = from; i < rr.conversation.size(); ++i) items.push_back(rr.conversation[i]);
    for (auto& m : items_to_messages(items, file_content, ctx.images)) messages.push_back(std::move(m));
    return messages;
  };
  chat["messages"] = ojson::array();  // filled by parse_from (the key keeps its place)
  for (const char* k : {"temperature", "top_p", "parallel_tool_calls", "user"})
    if (const ojson* v = field(b, k)) chat[k] = *v;
  if (const ojson* v = field(b, "max_output_tokens")) chat["max_completion_tokens"] = *v;
  if (rr.logprobs) {
    chat["logprobs"] = true;
    chat["top_logprobs"] = top_logprobs;
  }
  if (const ojson* t = field(b, "tools")) chat["tools"] = responses_tools_to_chat(*t);
  if (const ojson* c = field(b, "tool_choice")) chat["tool_choice"] = chat_tool_choice(*c);
  rr.echo = {{"text", {{"format", {{"type", "text"}}}}}};
  if (const ojson* t = field(b, "text"))
    if (ojson rf = chat_response_format(*t, rr.echo); !rf.is_null()) chat["response_format"] = std::move(rf);

  if (!effort.is_null()) chat["reasoning_effort"] = effort;
  auto parse_from = [&](size_t from) {
    chat["messages"] = messages_from(from);
    const std::string chat_text = chat.dump();
    return parse_chat_request(json::parse(chat_text), ctx, chat_text);
  };
  try {
    try {
      rr.spec = parse_from(0);
    } catch (const ApiError& e) {
      if (!truncate_auto || e.code() != "context_length_exceeded") throw;
      rr.spec = parse_truncated(rr.conversation, parse_from);
    }
  } catch (const ApiError& e) {
    throw ApiError(e.status(), responses_message(e.what()), responses_param(e.param()), e.type(), e.code());
  }

  // What the Response object reports back.
  auto echo = [&](const char* k, json dflt) {
    const ojson* v = field(b, k);
    rr.echo[k] = v ? json::parse(v->dump()) : std::move(dflt);
  };
  echo("instructions", nullptr);
  echo("max_output_tokens", nullptr);
  echo("metadata", json::object());
  echo("parallel_tool_calls", true);
  // Left out, they are what the request ran with: the model's defaults where it has them, else OpenAI's.
  const SamplingDefaults* d = ctx.sampling_defaults;
  echo("temperature", d && d->temperature ? *d->temperature : 1.0);
  echo("top_p", d && d->top_p ? *d->top_p : 1.0);
  echo("tool_choice", "auto");
  echo("tools", json::array());
  echo("user", nullptr);
  echo("max_tool_calls", nullptr);
  rr.echo["top_logprobs"] = top_logprobs;
  rr.echo["truncation"] = truncate_auto ? "auto" : "disabled";
  echo("service_tier", "default");
  rr.echo["previous_response_id"] = rr.previous_response_id.empty() ? json(nullptr) : json(rr.previous_response_id);
  rr.echo["conversation"] = rr.conversation_id.empty() ? json(nullptr) : json{{"id", rr.conversation_id}};
  rr.echo["reasoning"] = {{"effort", json::parse(effort.dump())}, {"summary", nullptr}};
  rr.echo["store"] = rr.store;
  rr.echo["background"] = rr.background;
  return rr;
}

}  // namespace dpserve
