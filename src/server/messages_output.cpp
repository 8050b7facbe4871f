#include "server/messages_output.h"

#include <algorithm>

namespace dpserve {

using json = nlohmann::json;

std::string MessagesOutput::tool_use_id(const std::string& call_id) {
  return call_id.rfind("call_", 0) == 0 ? "toolu_" + call_id.substr(5) : "toolu_" + call_id;
}

void MessagesOutput::open(Open kind, std::vector<json>& ev) {
  if (open_ == kind) return;
  close(ev);
  open_ = kind;
  // Thinking blocks carry Anthropic's signature of its own reasoning; this server signs nothing.
  json block = kind == Open::kThinking ? json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}
                                       : json{{"type", "text"}, {"text", ""}};
  blocks_.push_back(block);
  ev.push_back({{"type", "content_block_start"}, {"index", blocks_.size() - 1}, {"content_block", std::move(block)}});
}

void MessagesOutput::close(std::vector<json>& ev) {
  if (open_ == Open::kNone) return;
  open_ = Open::kNone;
  ev.push_back({{"type", "content_block_stop"}, {"index", blocks_.size() - 1}});
}

std::vector<json> MessagesOutput::feed(const ChatDelta& d) {
  std::vector<json> ev;
  auto text = [&](Open kind, const std::string& t) {
    if (t.empty()) return;
    open(kind, ev);
    const size_t index = blocks_.size() - 1;
    const char* key = kind == Open::kThinking ? "thinking" : "text";
    blocks_[index][key] = blocks_[index][key].get<std::string>() + t;
    ev.push_back({{"type", "content_block_delta"},
                  {"index", index},
                  {"delta", {{"type", kind == Open::kThinking ? "thinking_delta" : "text_delta"}, {key, t}}}});
  };
  text(Open::kThinking, d.reasoning);
  text(Open::kText, d.content);
  for (const ToolCall& c : d.tool_calls) {
    close(ev);
    // The parser releases a call once it is whole (its arguments a JSON object): one input delta.
    json input = json::parse(c.arguments, nullptr, false);
    if (!input.is_object()) input = json::object();
    const std::string id = tool_use_id(c.id);
    blocks_.push_back({{"type", "tool_use"}, {"id", id}, {"name", c.name}, {"input", input}});
    const size_t index = blocks_.size() - 1;
    ev.push_back({{"type", "content_block_start"},
                  {"index", index},
                  {"content_block", {{"type", "tool_use"}, {"id", id}, {"name", c.name}, {"input", json::object()}}}});
    ev.push_back({{"type", "content_block_delta"},
                  {"index", index},
                  {"delta", {{"type", "input_json_delta"}, {"partial_json", input.dump()}}}});
    ev.push_back({{"type", "content_block_stop"}, {"index", index}});
    ++calls_;
  }
  return ev;
}

std::vector<json> MessagesOutput::finish() {
  std::vector<json> ev;
  close(ev);
  return ev;
}

std::string anthropic_stop_reason(const std::string& finish_reason, const std::string& matched_stop,
                                  const std::vector<std::string>& stop_sequences, bool tool_use) {
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "abort") return "abort";
  if (tool_use) return "tool_use";
  if (!matched_stop.empty() &&
      std::find(stop_sequences.begin(), stop_sequences.end(), matched_stop) != stop_sequences.end())
    return "stop_sequence";
  return "end_turn";
}

}  // namespace dpserve
