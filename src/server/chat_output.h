// What a chat model writes, split the way OpenAI clients read it: reasoning (Qwen3's <think>...
// </think>, or gpt-oss's harmony channels: server/harmony_output.h, under --reasoning-parser),
// content, and tool calls (under --tool-call-parser: Hermes / Qwen <tool_call> JSON blocks,
// Qwen3-Coder's <tool_call><function=...> blocks, GLM-4.5's <tool_call>NAME<arg_key>... blocks, Llama-3 JSON objects, DeepSeek-V3 / V3.1
// <｜tool▁calls▁begin｜> sections, Mistral's [TOOL_CALLS] arrays and [TOOL_CALLS]NAME[ARGS] calls, or
// harmony messages to functions.NAME). The same parser serves whole responses (feed everything, then
// finish) and streams (feed each delivery): text is released as soon as it cannot be the start of a
// tag, a tool call once it is complete, whitespace that opens the output once what follows it is
// known (at the latest by finish()).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/harmony_output.h"

namespace dpserve {

enum class ReasoningParser { kNone, kQwen3, kGptOss };
// kGlm45 and kGlm47 read the same blocks (GLM-4.7 writes them without line breaks); their grammars differ.
enum class ToolCallParser {
  kNone, kHermes, kLlama3, kDeepSeekV3, kDeepSeekV31, kMistral, kQwen3Coder, kGlm45, kGlm47, kGptOss
};

// Flag values: "qwen3" (also "deepseek-r1" and "glm45": the same tags), "gpt-oss" (harmony); "" or "none".
ReasoningParser parse_reasoning_parser(const std::string& name);
// "hermes", "qwen", "qwen25", "qwen3" (the <tool_call> format), "llama3", "deepseekv3",
// "deepseekv31", "mistral", "qwen3_coder", "glm45", "glm47", "gpt-oss" (harmony's calls: needs the gpt-oss reasoning
// parser, which reads the format); "" or "none".
ToolCallParser parse_tool_call_parser(const std::string& name);
// The tags a parser finds calls by in the text (its opening marker first); none for llama3's JSON.
std::vector<std::string_view> tool_call_markers(ToolCallParser t);
// The tags of the harmony format (gpt-oss): the parser reads them, so the decoder must keep them.
std::vector<std::string_view> harmony_markers();

struct ToolCall {
  std::string id;         // "call_..."
  std::string name;
  std::string arguments;  // a JSON object as text, as OpenAI sends it
};

struct ChatDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

class ChatOutputParser {
 public:
  // `tool_names`: the request's tools (a call of another name stays text); empty: no tool parsing.
  // `in_reasoning`: the prompt already opened a <think> block (the template ends with it).
  // `id_seed` makes the tool call ids (distinct per choice). `single_call` (parallel_tool_calls
  // false): the first call only.
  ChatOutputParser(ReasoningParser r, ToolCallParser t, std::vector<std::string> tool_names, bool in_reasoning,
                   uint64_t id_seed, bool single_call = false);

  // The tools' parameter schemas, in `tool_names`' order: Qwen3-Coder's and GLM's formats type their values by them.
  void set_tool_parameters(std::vector<nlohmann::ordered_json> params) { params_ = std::move(params); }

  ChatDelta feed(std::string_view text);
  ChatDelta finish();
  size_t tool_calls_made() const { return calls_; }

 private:
  // A harmony delta as reasoning, content and calls (a call that is not one of the tools: its text as content).
  ChatDelta from_harmony(HarmonyDelta d);
  void run(bool final, ChatDelta& out);
  void content_step(bool final, ChatDelta& out);
  bool parse_call(const std::string& json_text, ChatDelta& out);
  // One Qwen3-Coder or GLM call, the text between <tool_call> and </tool_call>.
  bool coder_call(const std::string& inner, ChatDelta& out);
  // A call whose name and arguments (JSON text, any value) the format gives apart (DeepSeek).
  bool add_call(const std::string& name, const std::string& args_text, ChatDelta& out);
  // One DeepSeek call, the text between <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>.
  bool parse_deepseek_call(std::string_view inner, ChatDelta& out);
  void deepseek_section_step(bool final, ChatDelta& out);
  // Mistral: the JSON array after [TOOL_CALLS], once its closing bracket shows (or at the end).
  void mistral_step(bool final, ChatDelta& out);
  // Mistral v11+: NAME[ARGS]{...} after [TOOL_CALLS], once the object closes (or at the end).
  void mistral_named_step(bool final, ChatDelta& out);
  // Where the JSON array / object starting at buf_[from] ends (one past its closing bracket), or npos
  // while it is still open; resumes scan_ from where the last call stopped.
  size_t json_value_end(size_t from);
  // Content after the first call: whitespace is content only once text follows the last call
  // (whitespace between or after calls is the format's, not the model's answer).
  void emit(const std::string& text, ChatDelta& out);
  bool space_is_content() const { return calls_ == 0 || text_since_call_; }
  // Where `tag` ("</tool_call>", "<｜tool▁call▁end｜>") starts in buf_ outside a JSON string, or npos (yet).
  size_t close_outside_strings(std::string_view tag);
  std::string next_id();

  ReasoningParser reasoning_;
  ToolCallParser tools_;
  std::vector<std::string> names_;
  std::vector<nlohmann::ordered_json> params_;
  enum class Mode { kStart, kReasoning, kContent, kToolBlock, kJsonCalls, kDsSection, kDsCall, kMistralCalls } mode_;
  std::string buf_;       // text not released yet
  bool content_started_ = false;
  bool think_closed_ = false;  // the output closed a <think> block: newlines after it are the separator
  size_t calls_ = 0;
  bool single_call_ = false;
  bool text_since_call_ = false;  // content other than whitespace came after the last call
  bool section_shown_ = false;    // a DeepSeek section's opening tag went to content (a call in it was not one)
  bool section_calls_ = false;    // a call in the open DeepSeek section was one
  struct Scan {  // a pass over JSON text: close_outside_strings' progress through the open tool block
    size_t pos = 0;
    bool in_string = false, escaped = false;
    int depth = 0;  // mistral_step: brackets open outside strings
    // Takes the next byte: true when it belongs to a string literal (its quotes included), where
    // brackets, separators and tags are data.
    bool string_byte(char c) {
      if (in_string) {
        if (escaped) escaped = false;
        else if (c == '\\') escaped = true;
        else if (c == '"') in_string = false;
        return true;
      }
      return in_string = c == '"';
    }
  } scan_;
  uint64_t seed_;
  HarmonyReader harmony_reader_;  // --reasoning-parser gpt-oss: it splits the text instead of run()
};

// One delivery of a choice's text through `parser` (null: all of it is content); with `finished`,
// also what the parser still held (as finish() releases it).
ChatDelta parse_delivery(ChatOutputParser* parser, std::string_view text, bool finished);

}  // namespace dpserve
