#include "server/response_output.h"

#include <algorithm>

namespace dpserve {

using json = nlohmann::json;

namespace {

json part(bool reasoning, const std::string& text, const json& logprobs = json::array()) {
  if (reasoning) return {{"type", "reasoning_text"}, {"text", text}};
  return {{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", logprobs}};
}

}  // namespace

void ResponseOutput::open(Open kind, std::vector<json>& ev) {
  if (open_ == kind) return;
  close("completed", ev);
  open_ = kind;
  text_.clear();
  logprobs_ = json::array();
  json item;
  if (kind == Open::kReasoning) {
    item = {{"id", new_id_("rs")}, {"type", "reasoning"}, {"summary", json::array()}, {"content", json::array()},
            {"status", "in_progress"}};
  } else {
    item = {{"id", new_id_("msg")}, {"type", "message"}, {"role", "assistant"}, {"content", json::array()},
            {"status", "in_progress"}};
  }
  items_.push_back(item);
  const size_t index = items_.size() - 1;
  ev.push_back({{"type", "response.output_item.added"}, {"output_index", index}, {"item", item}});
  ev.push_back({{"type", "response.content_part.added"}, {"item_id", item["id"]}, {"output_index", index},
                {"content_index", 0}, {"part", part(kind == Open::kReasoning, "")}});
}

void ResponseOutput::close(const char* status, std::vector<json>& ev) {
  if (open_ == Open::kNone) return;
  const bool reasoning = open_ == Open::kReasoning;
  open_ = Open::kNone;
  const size_t index = items_.size() - 1;
  json& item = items_[index];
  const json id = item["id"];
  item["content"] = json::array({part(reasoning, text_, logprobs_)});
  item["status"] = status;
  ev.push_back({{"type", reasoning ? "response.reasoning_text.done" : "response.output_text.done"}, {"item_id", id},
                {"output_index", index}, {"content_index", 0}, {"text", text_}});
  if (!reasoning) ev.back()["logprobs"] = logprobs_;
  ev.push_back({{"type", "response.content_part.done"},
                {"item_id", id},
                {"output_index", index},
                {"content_index", 0},
                {"part", part(reasoning, text_, logprobs_)}});
  ev.push_back({{"type", "response.output_item.done"}, {"output_index", index}, {"item", item}});
}

namespace {

std::string bytes_text(const json& entry) {
  std::string s;
  for (const json& b : entry["bytes"]) s += char(b.get<int>());
  return s;
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; });
}

}  // namespace

// The pending tokens that wrote the message text `d.content`: after the markup that closed a
// reasoning block `d` ended (and the blank tokens a parser drops before a message's first text),
// before the next markup (a tool call's opening: what follows is the call, or is held with it).
json ResponseOutput::message_tokens(const ChatDelta& d, bool first_text) {
  json p = std::move(pending_);
  pending_ = json::array();
  auto markup = [&](size_t i) { return markup_.count(bytes_text(p[i])) > 0; };
  size_t begin = 0;
  if (!d.reasoning.empty()) {
    // The reasoning's text, then its closing tag: the message starts after that tag.
    bool text_seen = false;
    for (size_t i = 0; i < p.size(); ++i) {
      if (!markup(i)) {
        text_seen = true;
      } else if (text_seen) {
        begin = i + 1;
        break;
      }
    }
  }
  while (begin < p.size() && markup(begin)) ++begin;
  if (first_text && !d.content.empty() && !blank(d.content.substr(0, 1)))
    while (begin < p.size() && blank(bytes_text(p[begin]))) ++begin;
  json mine = json::array();
  for (size_t i = begin; i < p.size() && !markup(i); ++i) mine.push_back(std::move(p[i]));
  return mine;
}

std::vector<json> ResponseOutput::feed(const ChatDelta& d, const json& logprobs) {
  std::vector<json> ev;
  if (logprobs.is_array())
    for (const json& e : logprobs) pending_.push_back(e);
  auto text = [&](Open kind, const std::string& t) {
    if (t.empty()) return;
    open(kind, ev);
    const bool first_text = text_.empty();
    text_ += t;
    const size_t index = items_.size() - 1;
    ev.push_back({{"type", kind == Open::kReasoning ? "response.reasoning_text.delta" : "response.output_text.delta"},
                  {"item_id", items_[index]["id"]}, {"output_index", index}, {"content_index", 0}, {"delta", t}});
    if (kind == Open::kMessage) {
      json mine = message_tokens(d, first_text);
      for (const json& e : mine) logprobs_.push_back(e);
      ev.back()["logprobs"] = std::move(mine);
    }
  };
  text(Open::kReasoning, d.reasoning);
  text(Open::kMessage, d.content);
  // Released as reasoning or a tool call only: those tokens were not the message's.
  if (d.content.empty() && (!d.reasoning.empty() || !d.tool_calls.empty())) pending_ = json::array();
  for (const ToolCall& c : d.tool_calls) {
    close("completed", ev);
    // The parser releases a call once it is whole: its arguments arrive in one delta.
    json item{{"id", new_id_("fc")}, {"type", "function_call"}, {"call_id", c.id}, {"name", c.name},
              {"arguments", ""}, {"status", "in_progress"}};
    items_.push_back(item);
    const size_t index = items_.size() - 1;
    ev.push_back({{"type", "response.output_item.added"}, {"output_index", index}, {"item", item}});
    ev.push_back({{"type", "response.function_call_arguments.delta"}, {"item_id", item["id"]},
                  {"output_index", index}, {"delta", c.arguments}});
    ev.push_back({{"type", "response.function_call_arguments.done"}, {"item_id", item["id"]},
                  {"output_index", index}, {"name", c.name}, {"arguments", c.arguments}});
    items_[index]["arguments"] = c.arguments;
    items_[index]["status"] = "completed";
    ev.push_back({{"type", "response.output_item.done"}, {"output_index", index}, {"item", items_[index]}});
    ++calls_;
  }
  return ev;
}

std::vector<json> ResponseOutput::finish(bool incomplete) {
  std::vector<json> ev;
  pending_ = json::array();  // never released as text (an EOS token, a held-back stop string)
  if (items_.empty()) open(Open::kMessage, ev);
  close(incomplete ? "incomplete" : "completed", ev);
  return ev;
}

std::string ResponseOutput::output_text() const {
  std::string s;
  for (const json& it : items_)
    if (it["type"] == "message")
      for (const json& p : it["content"])
        if (p["type"] == "output_text") s += p["text"].get<std::string>();
  return s;
}

}  // namespace dpserve
