#include "server/response_output.h"

namespace dpserve {

using json = nlohmann::json;

namespace {

json part(bool reasoning, const std::string& text) {
  if (reasoning) return {{"type", "reasoning_text"}, {"text", text}};
  return {{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", json::array()}};
}

}  // namespace

void ResponseOutput::open(Open kind, std::vector<json>& ev) {
  if (open_ == kind) return;
  close("completed", ev);
  open_ = kind;
  text_.clear();
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
  item["content"] = json::array({part(reasoning, text_)});
  item["status"] = status;
  ev.push_back({{"type", reasoning ? "response.reasoning_text.done" : "response.output_text.done"}, {"item_id", id},
                {"output_index", index}, {"content_index", 0}, {"text", text_}});
  if (!reasoning) ev.back()["logprobs"] = json::array();
  ev.push_back({{"type", "response.content_part.done"}, {"item_id", id}, {"output_index", index},
                {"content_index", 0}, {"part", part(reasoning, text_)}});
  ev.push_back({{"type", "response.output_item.done"}, {"output_index", index}, {"item", item}});
}

std::vector<json> ResponseOutput::feed(const ChatDelta& d) {
  std::vector<json> ev;
  auto text = [&](Open kind, const std::string& t) {
    if (t.empty()) return;
    open(kind, ev);
    text_ += t;
    const size_t index = items_.size() - 1;
    ev.push_back({{"type", kind == Open::kReasoning ? "response.reasoning_text.delta" : "response.output_text.delta"},
                  {"item_id", items_[index]["id"]}, {"output_index", index}, {"content_index", 0}, {"delta", t}});
    if (kind == Open::kMessage) ev.back()["logprobs"] = json::array();
  };
  text(Open::kReasoning, d.reasoning);
  text(Open::kMessage, d.content);
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
