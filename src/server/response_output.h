// A Responses API output, built from what the chat output parser releases: reasoning, message text
// and function calls become output items in the order the model wrote them, and each step yields the
// streaming events OpenAI defines for it (response.output_item.added, response.output_text.delta,
// response.reasoning_text.delta, response.function_call_arguments.done, ...). The whole response and
// the stream come from the same builder, so they cannot disagree.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/chat_output.h"

namespace dpserve {

class ResponseOutput {
 public:
  // `new_id(prefix)`: a fresh item id ("msg", "rs", "fc").
  explicit ResponseOutput(std::function<std::string(const char*)> new_id) : new_id_(std::move(new_id)) {}

  // The events the delta causes (without sequence_number; the writer numbers them). `logprobs`: with
  // include "message.output_text.logprobs", the per-token entries (token_logprobs) of the tokens this
  // delivery consumed. They go to the message text: held while nothing is released (a tag or a
  // character may be incomplete), given to the message text they wrote, dropped when what they
  // made was reasoning, markup (set_markup) or a tool call, or was never released (an EOS token).
  std::vector<nlohmann::json> feed(const ChatDelta& d, const nlohmann::json& logprobs = nullptr);
  // Closes the open item (status "incomplete" when the output was cut short). An output with no
  // item at all gets an empty message, so output_text is "" rather than missing.
  std::vector<nlohmann::json> finish(bool incomplete);

  // The texts of tokens that are the output's markup, never message text: the reasoning tags and
  // the tool-call markers of the parsers that run.
  void set_markup(std::set<std::string> tags) { markup_ = std::move(tags); }

  const nlohmann::json& items() const { return items_; }
  // The message text of all message items, as SDKs' output_text.
  std::string output_text() const;
  bool has_function_calls() const { return calls_ > 0; }

 private:
  enum class Open { kNone, kReasoning, kMessage };
  void open(Open kind, std::vector<nlohmann::json>& ev);
  void close(const char* status, std::vector<nlohmann::json>& ev);
  nlohmann::json message_tokens(const ChatDelta& d, bool first_text);

  std::function<std::string(const char*)> new_id_;
  nlohmann::json items_ = nlohmann::json::array();
  Open open_ = Open::kNone;
  std::string text_;  // the open item's text so far
  nlohmann::json logprobs_ = nlohmann::json::array();  // the open message's token logprobs so far
  nlohmann::json pending_ = nlohmann::json::array();   // entries whose text is not released yet
  std::set<std::string> markup_;
  size_t calls_ = 0;
};

}  // namespace dpserve
