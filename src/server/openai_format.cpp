#include "server/openai_format.h"

#include <span>

#include "core/check.h"
#include "server/generation.h"

namespace dpserve {

using json = nlohmann::json;

std::string token_text(const Tokenizer& tok, int32_t id) {
  const int32_t one[1] = {id};
  try {
    return tok.decode(std::span<const int32_t>(one, 1), false);
  } catch (const Error&) {
    return "";
  }
}

namespace {

// The bytes `id` adds to a decoded text: its raw bytes (a byte-level token holding part of a
// multi-byte character gives that part, where decoding it alone gives U+FFFD), none for a special
// token the text skips.
std::string text_bytes(const Tokenizer& tok, int32_t id, bool skip_special) {
  if (skip_special && tok.is_special(id)) return "";
  std::string b = tok.token_bytes(id);
  return b.empty() ? token_text(tok, id) : b;
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// One position's `top_logprobs` entry: its alternatives by token text, or null when none were asked.
json top_logprobs_entry(const Tokenizer& tok, const TokenOut& t, bool with_top) {
  if (!with_top) return nullptr;
  json top = json::object();
  for (const auto& a : t.top) top[token_text(tok, a.token)] = a.logprob;
  return top;
}

// The echoed prompt's part of completions-style logprobs: every prompt token, the first with null
// logprob and alternatives (nothing precedes it), then `prompt`'s entries for the positions after
// it. A token's text_offset is where its bytes start in `echoed`, found by walking the text: a token
// the text does not spell (a BOS the tokenizer added, a special token an ids prompt's echo skips)
// adds nothing; one whose leading space a decoder strips adds the rest.
void prompt_logprobs(const Tokenizer& tok, const std::vector<int32_t>& ids, const std::vector<TokenOut>& prompt,
                     bool with_top, std::string_view echoed, json& lp) {
  size_t at = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    // Entries come for positions 1..; fewer when the request ended early (an error).
    if (i > 0 && i - 1 >= prompt.size()) break;
    const int32_t id = i == 0 ? ids[0] : prompt[i - 1].token;
    lp["tokens"].push_back(token_text(tok, id));
    lp["text_offset"].push_back(int64_t(at));
    if (i == 0) {
      lp["token_logprobs"].push_back(nullptr);
      lp["top_logprobs"].push_back(nullptr);
    } else {
      const TokenOut& t = prompt[i - 1];
      lp["token_logprobs"].push_back(t.logprob);
      lp["top_logprobs"].push_back(top_logprobs_entry(tok, t, with_top));
    }
    const std::string b = text_bytes(tok, id, false);
    const std::string_view rest = echoed.substr(at);
    if (rest.starts_with(b)) {
      at += b.size();
    } else if (b.size() > 1 && b[0] == ' ' && rest.starts_with(std::string_view(b).substr(1))) {
      at += b.size() - 1;
    } else if (!tok.is_special(id)) {
      at += std::min(b.size(), rest.size());  // the tokenizer normalized the text: keep step
    }
  }
}

// Completions-style logprobs for `tokens`, whose bytes start at `offset` in the choice's text; with
// `prompt_ids`, the echoed prompt's part (prompt_logprobs above, `echoed` its text) first.
json completion_logprobs(const Tokenizer& tok, const std::vector<TokenOut>& tokens, int64_t offset, bool with_top,
                         bool skip_special, const std::vector<int32_t>* prompt_ids = nullptr,
                         const std::vector<TokenOut>* prompt = nullptr, std::string_view echoed = {}) {
  json lp{{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
  if (prompt_ids && !prompt_ids->empty()) prompt_logprobs(tok, *prompt_ids, *prompt, with_top, echoed, lp);
  for (const auto& t : tokens) {
    lp["tokens"].push_back(token_text(tok, t.token));
    lp["token_logprobs"].push_back(t.logprob);
    lp["text_offset"].push_back(offset);
    offset += int64_t(text_bytes(tok, t.token, skip_special).size());
    lp["top_logprobs"].push_back(top_logprobs_entry(tok, t, with_top));
  }
  return lp;
}

json tool_calls_json(const std::vector<ToolCall>& calls, size_t first_index, bool streamed) {
  json out = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    json c{{"id", calls[k].id},
           {"type", "function"},
           {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
    if (streamed) c["index"] = first_index + k;
    out.push_back(std::move(c));
  }
  return out;
}

// `bytes` are the token's own UTF-8 bytes (OpenAI's field, there for tokens that hold part of a
// character: joined they give the text), `token` its text decoded alone.
json chat_logprobs(const Tokenizer& tok, const std::vector<TokenOut>& tokens) {
  json content = json::array();
  for (const auto& t : tokens) {
    json top = json::array();
    for (const auto& a : t.top)
      top.push_back({{"token", token_text(tok, a.token)},
                     {"logprob", a.logprob},
                     {"bytes", bytes_of(text_bytes(tok, a.token, false))}});
    content.push_back({{"token", token_text(tok, t.token)},
                       {"logprob", t.logprob},
                       {"bytes", bytes_of(text_bytes(tok, t.token, false))},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

}  // namespace

const char* ChoiceFormatter::object() const {
  return api_ == OpenAiApi::kChat ? "chat.completion" : "text_completion";
}

const char* ChoiceFormatter::chunk_object() const {
  return api_ == OpenAiApi::kChat ? "chat.completion.chunk" : "text_completion";
}

std::string ChoiceFormatter::prefix(size_t index) const {
  if (api_ != OpenAiApi::kCompletion || !spec_.echo) return "";
  const size_t p = index / size_t(spec_.n);
  if (!spec_.prompt_texts[p].empty() || spec_.prompts[p].empty()) return spec_.prompt_texts[p];
  // A prompt given as token ids echoes as their text (as the generated text is decoded).
  try {
    return tok_.decode(std::span<const int32_t>(spec_.prompts[p]), spec_.skip_special_tokens);
  } catch (const Error&) {
    return "";
  }
}

json ChoiceFormatter::opening(size_t index) const {
  if (api_ != OpenAiApi::kChat) return nullptr;
  return {{"index", index}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
          {"finish_reason", nullptr}};
}

json ChoiceFormatter::choice(size_t index, const ChoicePiece& p, bool streamed) const {
  if (streamed && p.text.empty() && p.prefix.empty() && p.tokens.empty() && !p.echo_logprobs && !p.finished)
    return nullptr;
  json ch{{"index", index}};
  if (api_ == OpenAiApi::kChat && p.chat) {
    const ChatDelta& d = *p.chat;
    if (streamed) {
      json delta = json::object();
      if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
      if (!d.content.empty()) delta["content"] = d.content;
      if (!d.tool_calls.empty()) delta["tool_calls"] = tool_calls_json(d.tool_calls, p.first_call, true);
      // Text held back (it may open a tag) with nothing else to say: no chunk yet.
      if (delta.empty() && (!spec_.logprobs || p.tokens.empty()) && !p.finished) return nullptr;
      ch["delta"] = std::move(delta);
    } else {
      json msg{{"role", "assistant"},
               {"content", d.content.empty() && !d.tool_calls.empty() ? json(nullptr) : json(d.content)}};
      if (reasoning_field_) msg["reasoning_content"] = d.reasoning.empty() ? json(nullptr) : json(d.reasoning);
      if (!d.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(d.tool_calls, 0, false);
      ch["message"] = std::move(msg);
    }
    ch["logprobs"] = spec_.logprobs ? chat_logprobs(tok_, p.tokens) : json(nullptr);
  } else if (api_ == OpenAiApi::kChat) {
    if (streamed)
      ch["delta"] = p.text.empty() && p.finished ? json::object() : json{{"content", p.text}};
    else
      ch["message"] = {{"role", "assistant"}, {"content", p.text}};
    ch["logprobs"] = spec_.logprobs ? chat_logprobs(tok_, p.tokens) : json(nullptr);
  } else {
    ch["text"] = p.prefix + p.text;
    const std::vector<int32_t>* prompt_ids = p.echo_logprobs ? &spec_.prompts[index / size_t(spec_.n)] : nullptr;
    ch["logprobs"] = spec_.logprobs ? completion_logprobs(tok_, p.tokens, p.text_offset + int64_t(p.prefix.size()),
                                                          spec_.base.top_logprobs > 0, spec_.skip_special_tokens,
                                                          prompt_ids, &p.prompt, p.prefix)
                                    : json(nullptr);
  }
  ch["finish_reason"] = p.finished ? json(p.finish_reason) : json(nullptr);
  if (!p.matched_stop.empty()) ch["matched_stop"] = p.matched_stop;
  return ch;
}

int64_t ChoiceFormatter::token_bytes(const std::vector<TokenOut>& tokens) const {
  int64_t n = 0;
  for (const auto& t : tokens) n += int64_t(text_bytes(tok_, t.token, spec_.skip_special_tokens).size());
  return n;
}

json usage_of(Generation& gen, int32_t n) {
  int64_t prompt = 0, cached = 0, completion = 0;
  for (size_t i = 0; i < gen.size(); ++i) {
    ChoiceRun& c = gen.choice(i);
    completion += c.completion_tokens();
    if (i % size_t(n) == 0) {  // a prompt counts once however many choices it has
      prompt += c.prompt_tokens();
      cached += c.cached_tokens();
    }
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

}  // namespace dpserve
