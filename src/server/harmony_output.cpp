#include "server/harmony_output.h"

#include <algorithm>
#include <array>

#include "constrain/harmony_grammar.h"
#include "server/partial_tag.h"
#include "tokenizer/tokenizer.h"

namespace dpserve {

namespace {

constexpr std::string_view kStart = "<|start|>";
constexpr std::string_view kChannel = "<|channel|>";
constexpr std::string_view kMessage = "<|message|>";
constexpr std::string_view kEnd = "<|end|>";
constexpr std::string_view kReturn = "<|return|>";
constexpr std::string_view kCall = "<|call|>";
constexpr std::string_view kTo = "to=";
constexpr std::string_view kFunctions = "functions.";
// A header longer than this without <|message|> is not one: the text is content.
constexpr size_t kMaxHeader = 1024;

// What may open an output's first header (the prompt ends with "<|start|>assistant", so the
// output starts in the header: its channel, or a recipient in the role part).
constexpr std::array<std::string_view, 3> kOpeners = {kChannel, kStart, kTo};
// What ends a body: <|end|>, a stop token, or (a model that left out <|end|>) the next header.
constexpr std::array<std::string_view, 4> kBodyEnds = {kEnd, kReturn, kCall, kStart};

// The word after `at` in a header: up to a space, a newline or the next tag.
std::string_view word_at(std::string_view header, size_t at) {
  const size_t end = header.find_first_of(" \t\r\n<", at);
  return header.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
}

}  // namespace

std::string_view missing_harmony_tag(const Tokenizer& tok) {
  for (const std::string_view tag : constrain::kHarmonyTags)
    if (const int32_t id = tok.piece_to_id(tag); id < 0 || !tok.is_special(id)) return tag;
  return {};
}

void HarmonyReader::open_body(std::string_view header) {
  std::string_view channel, recipient;
  if (const size_t c = header.find(kChannel); c != std::string_view::npos)
    channel = word_at(header, c + kChannel.size());
  // "to=" starts the header or follows a space or a tag ("assistant to=...", "commentary to=...").
  for (size_t t = header.find(kTo); t != std::string_view::npos; t = header.find(kTo, t + 1))
    if (t == 0 || header[t - 1] == ' ' || header[t - 1] == '>') {
      recipient = word_at(header, t + kTo.size());
      break;
    }
  call_args_.clear();
  if (recipient.starts_with(kFunctions) && recipient.size() > kFunctions.size()) {
    route_ = Route::kCall;
    call_name_ = std::string(recipient.substr(kFunctions.size()));
  } else if (!recipient.empty() || channel == "analysis") {
    route_ = Route::kReasoning;  // the chain of thought, or a message to a built-in tool
  } else {
    route_ = Route::kContent;  // final, or a commentary preamble
  }
}

void HarmonyReader::body_text(std::string_view text, HarmonyDelta& out) {
  switch (route_) {
    case Route::kReasoning: out.reasoning += text; break;
    case Route::kContent: out.content += text; break;
    case Route::kCall: call_args_ += text; break;
  }
}

void HarmonyReader::close_body(HarmonyDelta& out) {
  if (route_ == Route::kCall) out.calls.push_back({std::move(call_name_), std::move(call_args_), out.content.size()});
  call_name_.clear();
  call_args_.clear();
  route_ = Route::kContent;
}

void HarmonyReader::run(bool final, HarmonyDelta& out) {
  for (;;) {
    const State before = state_;
    const size_t size_before = buf_.size();
    switch (state_) {
      case State::kStart: {
        const size_t p = buf_.find_first_not_of(" \t\r\n");
        if (p == std::string::npos) {
          if (final) state_ = State::kPlain;
          break;
        }
        const std::string_view rest = std::string_view(buf_).substr(p);
        bool header = false, maybe = false;
        for (std::string_view o : kOpeners) {
          header = header || rest.starts_with(o);
          maybe = maybe || o.starts_with(rest);
        }
        if (header) {
          buf_.erase(0, p);
          state_ = State::kHeader;
        } else if (!maybe || final) {
          state_ = State::kPlain;
        }
        break;
      }
      case State::kPlain:
        out.content += buf_;
        buf_.clear();
        break;
      case State::kHeader: {
        const size_t at = buf_.find(kMessage);
        if (at != std::string::npos && at <= kMaxHeader) {
          open_body(std::string_view(buf_).substr(0, at));
          buf_.erase(0, at + kMessage.size());
          state_ = State::kBody;
        } else if (buf_.size() >= kMaxHeader + kMessage.size()) {
          state_ = State::kPlain;  // no header after all
        } else if (final) {
          buf_.clear();  // the output stopped inside a header: markup, no text
        }
        break;
      }
      case State::kBody: {
        size_t at = std::string::npos;
        std::string_view tag;
        for (std::string_view e : kBodyEnds)
          if (const size_t i = buf_.find(e); i < at) {
            at = i;
            tag = e;
          }
        if (at != std::string::npos) {
          body_text(std::string_view(buf_).substr(0, at), out);
          close_body(out);
          // The next header starts at <|start|>; the other tags end the message and are dropped.
          buf_.erase(0, tag == kStart ? at : at + tag.size());
          state_ = State::kHeader;
          break;
        }
        size_t keep = 0;
        if (!final)
          for (std::string_view e : kBodyEnds) keep = std::max(keep, partial_tag(buf_, e));
        body_text(std::string_view(buf_).substr(0, buf_.size() - keep), out);
        buf_.erase(0, buf_.size() - keep);
        if (final) close_body(out);
        break;
      }
    }
    if (state_ == before && buf_.size() == size_before) return;
  }
}

HarmonyDelta HarmonyReader::feed(std::string_view text) {
  buf_.append(text);
  HarmonyDelta out;
  run(false, out);
  return out;
}

HarmonyDelta HarmonyReader::finish() {
  HarmonyDelta out;
  run(true, out);
  return out;
}

}  // namespace dpserve
