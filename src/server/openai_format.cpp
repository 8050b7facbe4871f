#include "server/openai_format.h"

#include <cmath>
#include <span>

#include <fmt/format.h>

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

// How logprobs name a token: its text, or "token_id:<id>" (vLLM's return_tokens_as_token_ids, for
// clients that map logprobs back to ids where a text is ambiguous or not valid UTF-8 alone).
struct TokenNames {
  const Tokenizer& tok;
  bool as_ids = false;
  std::string operator()(int32_t id) const { return as_ids ? fmt::format("token_id:{}", id) : token_text(tok, id); }
};

// The first `top_n` of a position's alternatives (the engine may have computed more: see
// GenSpec::shown_top_logprobs).
std::span<const TokenLogprob> shown(const TokenOut& t, int32_t top_n) {
  return std::span<const TokenLogprob>(t.top).first(std::min(t.top.size(), size_t(std::max(top_n, 0))));
}

// One position's `top_logprobs` entry: its alternatives by token name, or null when none were asked.
json top_logprobs_entry(const TokenNames& name, const TokenOut& t, int32_t top_n) {
  if (top_n <= 0) return nullptr;
  json top = json::object();
  for (const auto& a : shown(t, top_n)) top[name(a.token)] = a.logprob;
  return top;
}

// The echoed prompt's part of completions-style logprobs: every prompt token, the first with null
// logprob and alternatives (nothing precedes it), then `prompt`'s entries for the positions after
// it. A token's text_offset is where its bytes start in `echoed`, found by walking the text: a token
// the text does not spell (a BOS the tokenizer added, a special token an ids prompt's echo skips)
// adds nothing; one whose leading space a decoder strips adds the rest.
void echo_logprobs(const TokenNames& name, const std::vector<int32_t>& ids, const std::vector<TokenOut>& prompt,
                   int32_t top_n, std::string_view echoed, json& lp) {
  const Tokenizer& tok = name.tok;
  size_t at = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    // Entries come for positions 1..; fewer when the request ended early (an error).
    if (i > 0 && i - 1 >= prompt.size()) break;
    const int32_t id = i == 0 ? ids[0] : prompt[i - 1].token;
    lp["tokens"].push_back(name(id));
    lp["text_offset"].push_back(int64_t(at));
    if (i == 0) {
      lp["token_logprobs"].push_back(nullptr);
      lp["top_logprobs"].push_back(nullptr);
    } else {
      const TokenOut& t = prompt[i - 1];
      lp["token_logprobs"].push_back(t.logprob);
      lp["top_logprobs"].push_back(top_logprobs_entry(name, t, top_n));
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
json completion_logprobs(const TokenNames& name, const std::vector<TokenOut>& tokens, int64_t offset, int32_t top_n,
                         bool skip_special, const std::vector<int32_t>* prompt_ids = nullptr,
                         const std::vector<TokenOut>* prompt = nullptr, std::string_view echoed = {}) {
  json lp{{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
  if (prompt_ids && !prompt_ids->empty()) echo_logprobs(name, *prompt_ids, *prompt, top_n, echoed, lp);
  for (const auto& t : tokens) {
    lp["tokens"].push_back(name(t.token));
    lp["token_logprobs"].push_back(t.logprob);
    lp["text_offset"].push_back(offset);
    offset += int64_t(text_bytes(name.tok, t.token, skip_special).size());
    lp["top_logprobs"].push_back(top_logprobs_entry(name, t, top_n));
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
// With return_tokens_as_token_ids `token` is "token_id:<id>" and `bytes` still the token's own.
json chat_logprobs(const TokenNames& name, const std::vector<TokenOut>& tokens, int32_t top_n) {
  return {{"content", token_logprobs(name.tok, tokens, top_n, name.as_ids)}};
}

}  // namespace

json token_logprobs(const Tokenizer& tok, const std::vector<TokenOut>& tokens, int32_t top_n, bool as_ids) {
  const TokenNames name{tok, as_ids};
  json content = json::array();
  for (const auto& t : tokens) {
    json top = json::array();
    for (const auto& a : shown(t, top_n))
      top.push_back({{"token", name(a.token)},
                     {"logprob", a.logprob},
                     {"bytes", bytes_of(text_bytes(tok, a.token, false))}});
    content.push_back({{"token", name(t.token)},
                       {"logprob", t.logprob},
                       {"bytes", bytes_of(text_bytes(tok, t.token, false))},
                       {"top_logprobs", top}});
  }
  return content;
}

const char* ChoiceFormatter::object() const {
  return api_ == OpenAiApi::kChat ? "chat.completion" : "text_completion";
}

const char* ChoiceFormatter::chunk_object() const {
  return api_ == OpenAiApi::kChat ? "chat.completion.chunk" : "text_completion";
}

std::string ChoiceFormatter::prefix(size_t index) const {
  if (api_ == OpenAiApi::kChat) return spec_.chat_echo;
  if (!spec_.echo) return "";
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
  const TokenNames names{tok_, spec_.tokens_as_ids};
  if (api_ == OpenAiApi::kChat && p.chat) {
    const ChatDelta& d = *p.chat;
    if (streamed) {
      json delta = json::object();
      if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
      if (!p.prefix.empty() || !d.content.empty()) delta["content"] = p.prefix + d.content;
      if (!d.tool_calls.empty()) delta["tool_calls"] = tool_calls_json(d.tool_calls, p.first_call, true);
      // Text held back (it may open a tag) with nothing else to say: no chunk yet.
      if (delta.empty() && (!spec_.logprobs || p.tokens.empty()) && !p.finished) return nullptr;
      ch["delta"] = std::move(delta);
    } else {
      const std::string content = p.prefix + d.content;
      json msg{{"role", "assistant"},
               {"content", content.empty() && !d.tool_calls.empty() ? json(nullptr) : json(content)}};
      if (reasoning_field_) msg["reasoning_content"] = d.reasoning.empty() ? json(nullptr) : json(d.reasoning);
      if (!d.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(d.tool_calls, 0, false);
      ch["message"] = std::move(msg);
    }
    ch["logprobs"] = spec_.logprobs ? chat_logprobs(names, p.tokens, spec_.shown_top_logprobs) : json(nullptr);
  } else if (api_ == OpenAiApi::kChat) {
    if (streamed)
      ch["delta"] = p.prefix.empty() && p.text.empty() && p.finished ? json::object()
                                                                     : json{{"content", p.prefix + p.text}};
    else
      ch["message"] = {{"role", "assistant"}, {"content", p.prefix + p.text}};
    ch["logprobs"] = spec_.logprobs ? chat_logprobs(names, p.tokens, spec_.shown_top_logprobs) : json(nullptr);
  } else {
    ch["text"] = p.prefix + p.text;
    const std::vector<int32_t>* prompt_ids = p.echo_logprobs ? &spec_.prompts[index / size_t(spec_.n)] : nullptr;
    ch["logprobs"] = spec_.logprobs ? completion_logprobs(names, p.tokens, p.text_offset + int64_t(p.prefix.size()),
                                                          spec_.shown_top_logprobs, spec_.skip_special_tokens,
                                                          prompt_ids, &p.prompt, p.prefix)
                                    : json(nullptr);
    if (spec_.prompt_logprobs && !streamed)
      ch["prompt_logprobs"] = vllm_prompt_logprobs(tok_, spec_.prompts[index / size_t(spec_.n)], p.prompt,
                                                   *spec_.prompt_logprobs);
  }
  ch["finish_reason"] = p.finished ? json(p.finish_reason) : json(nullptr);
  if (!p.matched_stop.empty()) ch["matched_stop"] = p.matched_stop;
  return ch;
}

json vllm_prompt_logprobs(const Tokenizer& tok, const std::vector<int32_t>& ids, const std::vector<TokenOut>& prompt,
                          int32_t top_n) {
  // vLLM clamps -inf (a token the model rules out) to -9999 so the JSON stays numbers.
  auto entry = [&](int32_t id, float logprob, int64_t rank) {
    return json{{"logprob", std::isfinite(logprob) ? double(logprob) : -9999.0},
                {"rank", rank},
                {"decoded_token", token_text(tok, id)}};
  };
  json out = json::array();
  if (ids.empty()) return out;
  out.push_back(nullptr);  // nothing precedes the first token
  for (size_t i = 0; i + 1 < ids.size() && i < prompt.size(); ++i) {
    const TokenOut& t = prompt[i];
    json pos = json::object();
    pos[std::to_string(t.token)] = entry(t.token, t.logprob, t.rank);
    const auto top = shown(t, top_n);
    for (size_t r = 0; r < top.size(); ++r) {
      const std::string key = std::to_string(top[r].token);
      // The prompt's own token among the best keeps its entry (one key per id, as vLLM's dict).
      if (!pos.contains(key)) pos[key] = entry(top[r].token, top[r].logprob, int64_t(r) + 1);
    }
    out.push_back(std::move(pos));
  }
  return out;
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
