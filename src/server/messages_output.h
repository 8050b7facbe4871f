// An Anthropic Message's content, built from what the chat output parser releases: reasoning becomes
// thinking blocks, text text blocks and calls tool_use blocks, in the order the model wrote them; each
// step yields the stream events Anthropic defines for it (content_block_start, content_block_delta
// with text_delta / thinking_delta / input_json_delta, content_block_stop). The whole Message and the
// stream come from the same builder, so they cannot disagree.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/chat_output.h"

namespace dpserve {

class MessagesOutput {
 public:
  // The events the delta causes.
  std::vector<nlohmann::json> feed(const ChatDelta& d);
  // Closes the open block.
  std::vector<nlohmann::json> finish();

  const nlohmann::json& content() const { return blocks_; }
  bool has_tool_use() const { return calls_ > 0; }

  // Anthropic's tool_use ids read "toolu_…": the parser's "call_…" ids keep their random part.
  static std::string tool_use_id(const std::string& call_id);

 private:
  enum class Open { kNone, kThinking, kText };
  void open(Open kind, std::vector<nlohmann::json>& ev);
  void close(std::vector<nlohmann::json>& ev);

  nlohmann::json blocks_ = nlohmann::json::array();
  Open open_ = Open::kNone;
  size_t calls_ = 0;
};

// Anthropic's stop_reason for a finished choice: max_tokens (the length ran out), tool_use (the turn
// ended in calls), stop_sequence (one of `stop_sequences` ended it), end_turn otherwise; "abort" for
// a request cancelled by /abort_request (as chat's finish_reason says).
std::string anthropic_stop_reason(const std::string& finish_reason, const std::string& matched_stop,
                                  const std::vector<std::string>& stop_sequences, bool tool_use);

}  // namespace dpserve
