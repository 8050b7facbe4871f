#include "server/chat_output.h"

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "server/coder_tool_call.h"
#include "server/json_as_written.h"
#include "server/partial_tag.h"

namespace dpserve {

namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kCallOpen = "<tool_call>";
constexpr std::string_view kCallClose = "</tool_call>";
// DeepSeek-V3's tool tokens (fullwidth bars, U+2581 for the spaces), as its tokenizer and chat template
// spell them: a section of calls, each "function<｜tool▁sep｜>NAME\n```json\nARGS\n```" (V3) or
// "NAME<｜tool▁sep｜>ARGS" (V3.1) between the call tags.
constexpr std::string_view kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsSep = "<｜tool▁sep｜>";
// Mistral (v3 tokenizer, SGLang's mistral detector): [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...];
// from tokenizer v11 on (Mistral-Small-3.2, Magistral, Devstral) each call on its own:
// [TOOL_CALLS]NAME[ARGS]{...}, [ARGS] absent when the decoder skipped it as a special token (vLLM's form).
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";

// A function name's bytes (a tool's name is 1 to 64 of these: tools_parse.cpp).
bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool all_space(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

}  // namespace

ReasoningParser parse_reasoning_parser(const std::string& name) {
  if (name.empty() || name == "none") return ReasoningParser::kNone;
  if (name == "qwen3" || name == "deepseek-r1" || name == "glm45") return ReasoningParser::kQwen3;
  if (name == "gpt-oss") return ReasoningParser::kGptOss;
  fail("--reasoning-parser: '{}' is not one of qwen3, deepseek-r1, glm45, gpt-oss", name);
}

ToolCallParser parse_tool_call_parser(const std::string& name) {
  if (name.empty() || name == "none") return ToolCallParser::kNone;
  if (name == "hermes" || name == "qwen" || name == "qwen25" || name == "qwen3") return ToolCallParser::kHermes;
  if (name == "llama3") return ToolCallParser::kLlama3;
  if (name == "deepseekv3") return ToolCallParser::kDeepSeekV3;
  if (name == "deepseekv31") return ToolCallParser::kDeepSeekV31;
  if (name == "mistral") return ToolCallParser::kMistral;
  if (name == "qwen3_coder") return ToolCallParser::kQwen3Coder;
  if (name == "glm45") return ToolCallParser::kGlm45;
  if (name == "glm47") return ToolCallParser::kGlm47;
  if (name == "gpt-oss") return ToolCallParser::kGptOss;
  fail("--tool-call-parser: '{}' is not one of hermes, qwen, qwen25, qwen3, qwen3_coder, glm45, glm47, llama3, "
       "deepseekv3, deepseekv31, mistral, gpt-oss",
       name);
}

std::vector<std::string_view> tool_call_markers(ToolCallParser t) {
  switch (t) {
    case ToolCallParser::kHermes:
    case ToolCallParser::kQwen3Coder: return {kCallOpen, kCallClose};
    // GLM's tokenizers may hold every tag as a token of its own (kept in the text when special).
    case ToolCallParser::kGlm45:
    case ToolCallParser::kGlm47:
      return {kCallOpen, kCallClose, "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"};
    case ToolCallParser::kDeepSeekV3:
    case ToolCallParser::kDeepSeekV31: return {kDsCallsBegin, kDsCallBegin, kDsSep, kDsCallEnd, kDsCallsEnd};
    case ToolCallParser::kMistral: return {kMistralCalls, kMistralArgs};
    case ToolCallParser::kGptOss: return harmony_markers();
    case ToolCallParser::kLlama3:
    case ToolCallParser::kNone: break;
  }
  return {};
}

std::vector<std::string_view> harmony_markers() {
  return {"<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|constrain|>", "<|return|>", "<|call|>"};
}

ChatOutputParser::ChatOutputParser(ReasoningParser r, ToolCallParser t, std::vector<std::string> tool_names,
                                   bool in_reasoning, uint64_t id_seed, bool single_call)
    : reasoning_(r), tools_(tool_names.empty() ? ToolCallParser::kNone : t), names_(std::move(tool_names)),
      mode_(r == ReasoningParser::kNone ? Mode::kContent : in_reasoning ? Mode::kReasoning : Mode::kStart),
      single_call_(single_call), seed_(id_seed) {}

std::string ChatOutputParser::next_id() {
  // Distinct per call and per choice; OpenAI's ids are "call_" and 24 alphanumerics. Mistral's chat
  // templates (and mistral-common's validator) refuse any id but 9 alphanumerics when the call comes
  // back in the next turn's history, so Mistral calls get such ids (as vLLM gives them).
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  uint64_t x = seed_ * 0x9E3779B97F4A7C15ull + calls_ * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  const bool mistral = tools_ == ToolCallParser::kMistral;
  std::string id = mistral ? "" : "call_";
  for (int i = 0; i < (mistral ? 9 : 24); ++i) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    id.push_back(kAlnum[x % 62]);
  }
  return id;
}

size_t ChatOutputParser::close_outside_strings(std::string_view tag) {
  // The call is JSON: a "</tool_call>" inside one of its strings (an argument's text) is data, not
  // the end of the block. The scan resumes where the last delivery left it (streams feed a token
  // at a time), so a block costs one pass.
  for (; scan_.pos < buf_.size(); ++scan_.pos) {
    const char c = buf_[scan_.pos];
    if (scan_.string_byte(c)) continue;
    if (c == '<') {
      if (buf_.size() - scan_.pos < tag.size()) return std::string::npos;  // may still become the tag
      if (std::string_view(buf_).substr(scan_.pos, tag.size()) == tag) return scan_.pos;
    }
  }
  return std::string::npos;
}

bool ChatOutputParser::parse_call(const std::string& json_text, ChatDelta& out) {
  // nlohmann's reader ends its input at a NUL byte: what follows one would pass unread. JSON holds none.
  if (json_text.find('\0') != std::string::npos) return false;
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(json_text);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  const std::string name = j["name"].get<std::string>();
  if (std::find(names_.begin(), names_.end(), name) == names_.end()) return false;
  text_since_call_ = false;
  // parallel_tool_calls false: the turn's first call only (as vLLM), whatever the model wrote after.
  if (single_call_ && calls_ > 0) return true;
  const char* key = j.contains("arguments") ? "arguments" : j.contains("parameters") ? "parameters" : nullptr;
  ToolCall c;
  c.id = next_id();
  c.name = name;
  if (!key) {
    c.arguments = "{}";
  } else if (j[key].is_string()) {
    // Arguments written as a string: the string itself when it holds a JSON object (some models
    // quote their arguments), else the JSON string, so that `arguments` is always JSON text.
    const std::string s = j[key].get<std::string>();
    bool object = false;
    try {
      object = nlohmann::ordered_json::parse(s).is_object();
    } catch (const nlohmann::json::exception&) {
    }
    c.arguments = object ? s : j[key].dump();
  } else {
    c.arguments = compact_json(member_text(json_text, key));
    if (c.arguments.empty()) c.arguments = j[key].dump();
  }
  out.tool_calls.push_back(std::move(c));
  ++calls_;
  return true;
}

bool ChatOutputParser::coder_call(const std::string& inner, ChatDelta& out) {
  const bool glm = tools_ == ToolCallParser::kGlm45 || tools_ == ToolCallParser::kGlm47;
  std::optional<CoderCall> c = glm ? read_glm_call(inner, names_, params_) : read_coder_call(inner, names_, params_);
  if (!c) return false;
  text_since_call_ = false;
  if (single_call_ && calls_ > 0) return true;
  out.tool_calls.push_back({next_id(), std::move(c->name), std::move(c->arguments)});
  ++calls_;
  return true;
}

bool ChatOutputParser::add_call(const std::string& name, const std::string& args_text, ChatDelta& out) {
  if (std::find(names_.begin(), names_.end(), name) == names_.end()) return false;
  // The arguments must be a JSON object (OpenAI's `arguments`); anything else leaves the call as text.
  if (args_text.find('\0') != std::string::npos) return false;  // a NUL would end nlohmann's reading early
  try {
    if (!nlohmann::ordered_json::parse(args_text).is_object()) return false;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  text_since_call_ = false;
  if (single_call_ && calls_ > 0) return true;
  ToolCall c;
  c.id = next_id();
  c.name = name;
  c.arguments = compact_json(args_text);
  out.tool_calls.push_back(std::move(c));
  ++calls_;
  return true;
}

bool ChatOutputParser::parse_deepseek_call(std::string_view inner, ChatDelta& out) {
  const size_t sep = inner.find(kDsSep);
  if (sep == std::string_view::npos) return false;
  std::string_view head = inner.substr(0, sep), rest = inner.substr(sep + kDsSep.size());
  if (tools_ == ToolCallParser::kDeepSeekV31) return add_call(std::string(head), std::string(rest), out);
  // V3: the head is the tool's type ("function", as the template writes tool['type']); the name runs to
  // the newline that opens the ```json fence, the arguments to the fence's close.
  if (head != "function") return false;
  constexpr std::string_view kFence = "\n```json\n";
  const size_t f = rest.find(kFence);
  if (f == std::string_view::npos) return false;
  std::string_view args = rest.substr(f + kFence.size());
  const size_t last = args.find_last_not_of(" \t\r\n");
  if (last == std::string_view::npos || last < 2 || args.substr(last - 2, 3) != "```") return false;
  return add_call(std::string(rest.substr(0, f)), std::string(args.substr(0, last - 2)), out);
}

void ChatOutputParser::deepseek_section_step(bool final, ChatDelta& out) {
  // The section's opening tag goes to content when nothing in the section was a call (text as written).
  auto opening = [&] { return section_shown_ || section_calls_ ? std::string() : std::string(kDsCallsBegin); };
  // Between the calls of a section: whitespace is the format's (V3 puts a newline between calls).
  const size_t p = buf_.find_first_not_of(" \t\r\n");
  if (p == std::string::npos) {
    if (!final) return;
    if (const std::string t = opening(); !t.empty()) emit(t + buf_, out);
    buf_.clear();
    mode_ = Mode::kContent;
    return;
  }
  const std::string_view rest = std::string_view(buf_).substr(p);
  if (rest.starts_with(kDsCallBegin)) {
    buf_.erase(0, p + kDsCallBegin.size());
    mode_ = Mode::kDsCall;
    scan_ = {};
    return;
  }
  if (rest.starts_with(kDsCallsEnd)) {
    // Shown only when its opening tag was.
    if (section_shown_ || !section_calls_) emit(opening() + buf_.substr(0, p + kDsCallsEnd.size()), out);
    buf_.erase(0, p + kDsCallsEnd.size());
    mode_ = Mode::kContent;
    return;
  }
  if (!final && (kDsCallBegin.starts_with(rest) || kDsCallsEnd.starts_with(rest))) return;  // may still become one
  // Other text: the section ended without its closing tag; what follows is content.
  if (const std::string t = opening(); !t.empty()) emit(t, out);
  mode_ = Mode::kContent;
}

void ChatOutputParser::mistral_step(bool final, ChatDelta& out) {
  // buf_ starts right after [TOOL_CALLS]: whitespace, then the array.
  const size_t p = buf_.find_first_not_of(" \t\r\n");
  auto as_text = [&] {
    emit(std::string(kMistralCalls) + buf_, out);
    buf_.clear();
    mode_ = Mode::kContent;
  };
  if (p == std::string::npos) {
    if (final) as_text();
    return;
  }
  if (buf_[p] != '[') return mistral_named_step(final, out);
  const size_t end = json_value_end(p);
  if (end == std::string::npos) {
    if (final) as_text();
    return;
  }
  // The array's elements, split at its top-level commas (each parsed from its own text, so that its
  // arguments keep their numbers as written); all calls or none.
  const std::string array = buf_.substr(0, end);
  bool ok = false;
  ChatDelta calls;
  const size_t saved = calls_;
  const bool saved_text = text_since_call_;
  try {
    const auto j = nlohmann::ordered_json::parse(array);
    ok = j.is_array() && !j.empty();
  } catch (const nlohmann::json::exception&) {
  }
  if (ok) {
    int depth = 0;
    Scan str;
    size_t start = p + 1;
    for (size_t i = p + 1; i < end && ok; ++i) {
      const char c = array[i];
      if (str.string_byte(c)) continue;
      if (c == '[' || c == '{') ++depth;
      else if (c == '}' || (c == ']' && depth > 0)) --depth;
      else if ((c == ',' && depth == 0) || (c == ']' && depth == 0)) {
        ok = parse_call(array.substr(start, i - start), calls);
        start = i + 1;
      }
    }
  }
  if (!ok) {
    calls_ = saved;
    text_since_call_ = saved_text;
    emit(std::string(kMistralCalls) + array, out);
  } else {
    for (auto& c : calls.tool_calls) out.tool_calls.push_back(std::move(c));
  }
  buf_.erase(0, end);
  mode_ = Mode::kContent;
  scan_ = {};
}

size_t ChatOutputParser::json_value_end(size_t from) {
  if (scan_.pos < from) scan_.pos = from;
  for (; scan_.pos < buf_.size(); ++scan_.pos) {
    const char c = buf_[scan_.pos];
    if (scan_.string_byte(c)) continue;
    if (c == '[' || c == '{') ++scan_.depth;
    else if ((c == ']' || c == '}') && --scan_.depth == 0) return ++scan_.pos;
  }
  return std::string::npos;
}

void ChatOutputParser::mistral_named_step(bool final, ChatDelta& out) {
  // buf_ starts right after [TOOL_CALLS]: NAME, [ARGS] (or not), then one JSON object.
  auto not_a_call = [&] {  // the tag is text; what follows is content again
    emit(std::string(kMistralCalls), out);
    mode_ = Mode::kContent;
    scan_ = {};
  };
  size_t a = 0;
  while (a < buf_.size() && name_char(buf_[a])) ++a;
  const size_t name_end = a;
  if (a == buf_.size()) return final ? not_a_call() : void();
  if (name_end == 0) return not_a_call();
  const std::string_view rest = std::string_view(buf_).substr(a);
  if (rest.starts_with(kMistralArgs)) {
    a += kMistralArgs.size();
  } else if (kMistralArgs.starts_with(rest)) {
    return final ? not_a_call() : void();  // may still become [ARGS]
  }
  if (a == buf_.size()) return final ? not_a_call() : void();
  if (buf_[a] != '{') return not_a_call();
  const size_t end = json_value_end(a);
  if (end == std::string::npos) {
    if (final) {  // the arguments never closed: all of it is text
      emit(std::string(kMistralCalls) + buf_, out);
      buf_.clear();
      mode_ = Mode::kContent;
      scan_ = {};
    }
    return;
  }
  if (!add_call(buf_.substr(0, name_end), buf_.substr(a, end - a), out))
    emit(std::string(kMistralCalls) + buf_.substr(0, end), out);
  buf_.erase(0, end);
  mode_ = Mode::kContent;
  scan_ = {};
}

void ChatOutputParser::emit(const std::string& text, ChatDelta& out) {
  out.content += text;
  if (!all_space(text)) text_since_call_ = true;
}

void ChatOutputParser::content_step(bool final, ChatDelta& out) {
  if (!content_started_) {
    // Leading newlines after </think> are the template's separator, not content. Whitespace that opens the
    // output is held instead, until what follows it shows: before text or a block its newlines go the same
    // way, but an output that is only whitespace is what the model wrote, content as OpenAI returns it and
    // SGLang's parsers (which strip only tags and their blocks) do. A stream gets it from finish().
    if (!think_closed_ && all_space(buf_)) {
      if (!final) return;
      content_started_ = true;
      out.content += buf_;
      buf_.clear();
      return;
    }
    const size_t k = buf_.find_first_not_of('\n');
    buf_.erase(0, k == std::string::npos ? buf_.size() : k);
    if (buf_.empty()) return;
    content_started_ = true;
    if (tools_ == ToolCallParser::kLlama3) {
      const size_t p = buf_.find_first_not_of(" \t\r\n");
      if (p != std::string::npos && buf_[p] == '{') {
        mode_ = Mode::kJsonCalls;  // a JSON tool call: held whole until the end
        return;
      }
    }
  }
  const bool deepseek = tools_ == ToolCallParser::kDeepSeekV3 || tools_ == ToolCallParser::kDeepSeekV31;
  const bool mistral = tools_ == ToolCallParser::kMistral;
  const bool tagged = tools_ == ToolCallParser::kHermes || tools_ == ToolCallParser::kQwen3Coder ||
                      tools_ == ToolCallParser::kGlm45 || tools_ == ToolCallParser::kGlm47;
  if (!tagged && !deepseek && !mistral) {
    out.content += buf_;
    buf_.clear();
    return;
  }
  const std::string_view open = deepseek ? kDsCallsBegin : mistral ? kMistralCalls : kCallOpen;
  const size_t at = buf_.find(open);
  if (at != std::string::npos) {
    std::string before = buf_.substr(0, at);
    if (space_is_content() || !all_space(before)) emit(before, out);
    buf_.erase(0, at + open.size());
    mode_ = deepseek ? Mode::kDsSection : mistral ? Mode::kMistralCalls : Mode::kToolBlock;
    section_shown_ = section_calls_ = false;
    scan_ = {};
    return;
  }
  const size_t keep = final ? 0 : partial_tag(buf_, open);
  std::string ready = buf_.substr(0, buf_.size() - keep);
  // Whitespace between or after calls is not content; held until something else shows up.
  if (!space_is_content() && all_space(ready) && !final) return;
  if (space_is_content() || !all_space(ready)) emit(ready, out);
  buf_.erase(0, buf_.size() - keep);
}

void ChatOutputParser::run(bool final, ChatDelta& out) {
  for (;;) {
    const Mode before = mode_;
    const size_t size_before = buf_.size();
    switch (mode_) {
      case Mode::kStart: {
        // Reasoning only when the output opens with <think> (whitespace may precede it).
        const size_t p = buf_.find_first_not_of(" \t\r\n");
        if (p == std::string::npos) {
          if (final) mode_ = Mode::kContent;
          break;
        }
        std::string_view rest = std::string_view(buf_).substr(p);
        if (rest.substr(0, kThinkOpen.size()) == kThinkOpen) {
          buf_.erase(0, p + kThinkOpen.size());
          mode_ = Mode::kReasoning;
        } else if (!final && kThinkOpen.substr(0, rest.size()) == rest) {
          break;  // may still become <think>
        } else {
          mode_ = Mode::kContent;
        }
        break;
      }
      case Mode::kReasoning: {
        const size_t at = buf_.find(kThinkClose);
        if (at != std::string::npos) {
          out.reasoning += buf_.substr(0, at);
          buf_.erase(0, at + kThinkClose.size());
          mode_ = Mode::kContent;
          think_closed_ = true;
          break;
        }
        const size_t keep = final ? 0 : partial_tag(buf_, kThinkClose);
        out.reasoning += buf_.substr(0, buf_.size() - keep);
        buf_.erase(0, buf_.size() - keep);
        break;
      }
      case Mode::kContent:
        content_step(final, out);
        break;
      case Mode::kToolBlock: {
        // Qwen3-Coder's and GLM's values are raw text, where quotes mean nothing: the first closing tag ends
        // the block (searched from where the last delivery's search stopped, so a long block costs one pass).
        const bool coder = tools_ == ToolCallParser::kQwen3Coder || tools_ == ToolCallParser::kGlm45 ||
                           tools_ == ToolCallParser::kGlm47;
        size_t at = coder ? buf_.find(kCallClose, scan_.pos) : close_outside_strings(kCallClose);
        if (coder && at == std::string::npos) scan_.pos = buf_.size() - std::min(buf_.size(), kCallClose.size() - 1);
        // Not JSON after all (an unbalanced quote): at the end, the first closing tag ends it.
        if (at == std::string::npos && final) at = buf_.find(kCallClose);
        if (at != std::string::npos) {
          const std::string inner = buf_.substr(0, at);
          if (!(coder ? coder_call(inner, out) : parse_call(inner, out)))
            emit(std::string(kCallOpen) + inner + std::string(kCallClose), out);
          buf_.erase(0, at + kCallClose.size());
          mode_ = Mode::kContent;
          scan_ = {};
        } else if (final) {
          // The output ended inside a block (EOS before the closing tag): a complete call still counts.
          scan_ = {};
          if (!(coder ? coder_call(buf_, out) : parse_call(buf_, out))) emit(std::string(kCallOpen) + buf_, out);
          buf_.clear();
          mode_ = Mode::kContent;
        }
        break;
      }
      case Mode::kDsSection:
        deepseek_section_step(final, out);
        break;
      case Mode::kMistralCalls:
        mistral_step(final, out);
        break;
      case Mode::kDsCall: {
        size_t at = close_outside_strings(kDsCallEnd);
        if (at == std::string::npos && final) at = buf_.find(kDsCallEnd);
        // Not a call (unknown name, arguments not a JSON object): the text as written, section tag included.
        auto as_text = [&](const std::string& inner, bool closed) {
          std::string t = section_shown_ || section_calls_ ? "" : std::string(kDsCallsBegin);
          t += std::string(kDsCallBegin) + inner + (closed ? std::string(kDsCallEnd) : "");
          section_shown_ = true;
          emit(t, out);
        };
        if (at != std::string::npos) {
          const std::string inner = buf_.substr(0, at);
          if (parse_deepseek_call(inner, out)) section_calls_ = true;
          else as_text(inner, true);
          buf_.erase(0, at + kDsCallEnd.size());
          mode_ = Mode::kDsSection;
          scan_ = {};
        } else if (final) {
          // The output ended inside a call (EOS before its closing tag): a complete call still counts.
          scan_ = {};
          if (!parse_deepseek_call(buf_, out)) as_text(buf_, false);
          buf_.clear();
          mode_ = Mode::kContent;
        }
        break;
      }
      case Mode::kJsonCalls: {
        if (!final) break;
        // One or more objects joined by ';' (Llama 3.1's JSON tool calling), all valid or none.
        ChatDelta calls;
        const size_t saved = calls_;
        bool ok = true;
        size_t start = 0;
        int depth = 0;
        Scan str;
        for (size_t i = 0; i <= buf_.size() && ok; ++i) {
          const char c = i < buf_.size() ? buf_[i] : ';';
          if (str.string_byte(c)) continue;
          if (c == '{' || c == '[') ++depth;
          if (c == '}' || c == ']') --depth;
          if (c == ';' && depth == 0) {
            const std::string part = buf_.substr(start, i - start);
            if (!all_space(part)) ok = parse_call(part, calls);
            start = i + 1;
          }
        }
        if (ok && !calls.tool_calls.empty()) {
          for (auto& c : calls.tool_calls) out.tool_calls.push_back(std::move(c));
        } else {
          calls_ = saved;
          out.content += buf_;
        }
        buf_.clear();
        mode_ = Mode::kContent;
        break;
      }
    }
    if (mode_ == before && buf_.size() == size_before) return;
  }
}

ChatDelta ChatOutputParser::from_harmony(HarmonyDelta d) {
  ChatDelta out;
  out.reasoning = std::move(d.reasoning);
  size_t done = 0;  // content emitted so far: each call goes where it came in the text
  for (HarmonyCall& c : d.calls) {
    if (c.content_at > done) emit(d.content.substr(done, c.content_at - done), out);
    done = c.content_at;  // calls come in the order of the text
    if (tools_ != ToolCallParser::kGptOss || !add_call(c.name, c.arguments, out)) emit(c.arguments, out);
  }
  if (d.content.size() > done) emit(d.content.substr(done), out);
  return out;
}

ChatDelta ChatOutputParser::feed(std::string_view text) {
  if (reasoning_ == ReasoningParser::kGptOss) return from_harmony(harmony_reader_.feed(text));
  buf_.append(text);
  ChatDelta out;
  run(false, out);
  return out;
}

ChatDelta ChatOutputParser::finish() {
  if (reasoning_ == ReasoningParser::kGptOss) return from_harmony(harmony_reader_.finish());
  ChatDelta out;
  run(true, out);
  return out;
}

ChatDelta parse_delivery(ChatOutputParser* parser, std::string_view text, bool finished) {
  ChatDelta d;
  if (!parser) {
    d.content = text;
    return d;
  }
  d = parser->feed(text);
  if (finished) {
    ChatDelta rest = parser->finish();
    d.reasoning += rest.reasoning;
    d.content += rest.content;
    for (auto& c : rest.tool_calls) d.tool_calls.push_back(std::move(c));
  }
  return d;
}

}  // namespace dpserve
