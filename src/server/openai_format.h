// The JSON of OpenAI choices, written once per API: a whole choice (non-streaming) and a streamed
// piece of one come from the same formatter, so the two paths cannot drift apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/request.h"
#include "server/chat_output.h"
#include "server/request_parse.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

class Generation;

// One token's text, decoded alone with special tokens spelled out ("" if it cannot be decoded).
std::string token_text(const Tokenizer& tok, int32_t id);

enum class OpenAiApi { kCompletion, kChat };

// What a choice says at once: all of it (non-streaming) or what one delivery added (streaming).
struct ChoicePiece {
  std::string prefix;         // text before the generated text: the echoed prompt, in a choice's first piece
  // The choice's first piece of a completion with echo + logprobs: its logprobs open with the
  // prompt's tokens (the first without a logprob), then `prompt`, positions 1.. of the prompt.
  bool echo_logprobs = false;
  std::vector<TokenOut> prompt;
  std::string text;           // generated text
  std::vector<TokenOut> tokens;
  int64_t text_offset = 0;    // bytes of the echo and of the choice's earlier tokens (completions logprobs)
  bool finished = false;
  std::string finish_reason;  // when finished
  std::string matched_stop;
  // Chat: the text split into reasoning, content and tool calls (null: all of it is content).
  const ChatDelta* chat = nullptr;
  size_t first_call = 0;      // streamed: index of the first tool call in `chat` within the choice
};

class ChoiceFormatter {
 public:
  // `reasoning_field`: chat messages carry reasoning_content (a --reasoning-parser runs).
  ChoiceFormatter(OpenAiApi api, const GenSpec& spec, const Tokenizer& tok, bool reasoning_field = false)
      : api_(api), spec_(spec), tok_(tok), reasoning_field_(reasoning_field) {}

  // "chat.completion" / "text_completion", and the streamed chunks' object.
  const char* object() const;
  const char* chunk_object() const;

  // The text a choice starts with before anything generated (completions with echo: the prompt as
  // sent, or the token ids' text; chat with echo: the final assistant message it continues).
  std::string prefix(size_t index) const;
  // The bytes `tokens` add to a choice's text (raw, so a part of a character counts its own bytes;
  // skipped special tokens none): what a streamed piece's text_offset advances by.
  int64_t token_bytes(const std::vector<TokenOut>& tokens) const;
  // Whether a choice's first piece carries the prompt's logprobs (completions with echo + logprobs).
  bool echo_logprobs() const { return api_ == OpenAiApi::kCompletion && spec_.echo && spec_.logprobs; }
  // Chat streams open each choice with an empty assistant delta; completions need none (null).
  nlohmann::json opening(size_t index) const;
  // Choice `index`: the whole of it (streamed false) or one streamed piece. A piece with no text, no
  // tokens and no finish says nothing (null).
  nlohmann::json choice(size_t index, const ChoicePiece& p, bool streamed) const;

 private:
  OpenAiApi api_;
  const GenSpec& spec_;
  const Tokenizer& tok_;
  bool reasoning_field_;
};

// vLLM's prompt_logprobs for a prompt of `ids`: null for the first position, then per position an
// object keyed by token id (the prompt's token with its vocabulary rank, then the best `top_n`
// alternatives ranked 1..), each {"logprob", "rank", "decoded_token"}. `prompt` holds positions 1..
nlohmann::json vllm_prompt_logprobs(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                    const std::vector<TokenOut>& prompt, int32_t top_n);

// OpenAI's per-token logprobs (chat's `logprobs.content`, the Responses API's output_text `logprobs`):
// each {"token", "logprob", "bytes", "top_logprobs": [the first `top_n` alternatives, the same shape]},
// `bytes` the token's own UTF-8 bytes; `as_ids`: tokens named "token_id:<id>" (vLLM's option).
nlohmann::json token_logprobs(const Tokenizer& tok, const std::vector<TokenOut>& tokens, int32_t top_n,
                              bool as_ids = false);

// usage: prompt tokens counted once per prompt however many choices it has.
nlohmann::json usage_of(Generation& gen, int32_t n);

}  // namespace dpserve
