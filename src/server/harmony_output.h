// gpt-oss's harmony response format, read as it streams (--reasoning-parser gpt-oss). The model
// writes messages, each a header and a body:
//   <|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final<|message|>...<|return|>
// The analysis channel is reasoning; final, and commentary without a recipient (a preamble), are
// content; a message to "functions.NAME" (the recipient may sit in the role or the channel part of
// the header, with `<|constrain|>json` or not) is a call of that tool, its body the arguments; a
// message to a built-in tool (browser.*, python) is reasoning. <|return|> and <|call|> are stop tokens
// and usually never reach the text; <|end|> closes a message and the next header follows.
// Bodies are released as they arrive, except text that may still become a tag; a call once its
// message ends. An output that does not open with a header is all content.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dpserve {

class Tokenizer;

// The first of harmony's tags (constrain/harmony_grammar.h) this tokenizer lacks as a special token,
// or "" when it has them all (gpt-oss's o200k_harmony does): reading and enforcing the format needs them.
std::string_view missing_harmony_tag(const Tokenizer& tok);

struct HarmonyCall {
  std::string name;       // after "functions."
  std::string arguments;  // the message body as written
  size_t content_at = 0;  // how much of the delta's content came before it (a call that is not one is text there)
};

struct HarmonyDelta {
  std::string reasoning, content;
  std::vector<HarmonyCall> calls;
};

class HarmonyReader {
 public:
  HarmonyDelta feed(std::string_view text);
  // The end of the output: a body still open ends here (the stop token that closed it is not in the text).
  HarmonyDelta finish();

 private:
  enum class State { kStart, kHeader, kBody, kPlain };
  enum class Route { kReasoning, kContent, kCall };
  void run(bool final, HarmonyDelta& out);
  void open_body(std::string_view header);
  void body_text(std::string_view text, HarmonyDelta& out);
  void close_body(HarmonyDelta& out);

  State state_ = State::kStart;
  Route route_ = Route::kContent;
  std::string buf_;        // text not consumed yet
  std::string call_name_;  // the open call's tool, and its arguments so far
  std::string call_args_;
};

}  // namespace dpserve
