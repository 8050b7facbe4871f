#include "tokenizer/token_decoder.h"

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/byte_level.h"

namespace dpserve {
namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
}

int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[i];
    v *= 16;
    if (c >= '0' && c <= '9') {
      v += c - '0';
    } else if (c >= 'A' && c <= 'F') {
      v += c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      v += c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return v;
}

void add_steps(const nlohmann::json& j, std::vector<TokenDecoder::Step>& steps) {
  using K = TokenDecoder::Kind;
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& d : j.at("decoders")) add_steps(d, steps);
  } else if (type == "ByteLevel") {
    steps.push_back({K::kByteLevel, "", ""});
  } else if (type == "Replace") {
    const auto& p = j.at("pattern");
    if (!p.contains("String")) fail("tokenizer.json: Replace decoder with a Regex pattern is not supported");
    steps.push_back({K::kReplace, p.at("String").get<std::string>(), j.at("content").get<std::string>()});
  } else if (type == "ByteFallback") {
    steps.push_back({K::kByteFallback, "", ""});
  } else if (type == "Fuse") {
    steps.push_back({K::kFuse, "", ""});
  } else if (type == "Strip") {
    TokenDecoder::Step s{K::kStrip, j.at("content").get<std::string>(), ""};
    s.start = j.value("start", 0);
    s.stop = j.value("stop", 0);
    steps.push_back(s);
  } else if (type == "Metaspace") {
    steps.push_back({K::kMetaspace, j.value("replacement", std::string("\xE2\x96\x81")), ""});
  } else {
    fail("tokenizer.json: decoder type '{}' is not supported", type);
  }
}

}  // namespace

TokenDecoder TokenDecoder::from_json(const nlohmann::json& j) {
  std::vector<Step> steps;
  add_steps(j, steps);
  return from_steps(std::move(steps));
}

TokenDecoder TokenDecoder::from_steps(std::vector<Step> steps) {
  TokenDecoder d;
  bool fused = false;
  for (const auto& s : steps) {
    d.fused_.push_back(fused);
    if (s.kind == Kind::kFuse) fused = true;
  }
  d.steps_ = std::move(steps);
  return d;
}

std::string TokenDecoder::raw_bytes(std::string tok) const {
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& s = steps_[i];
    switch (s.kind) {
      case Kind::kByteLevel: {
        std::string bytes;
        bool ok = true;
        for (size_t p = 0; p < tok.size() && ok;) {
          size_t len = 0;
          const int b = byte_level::char_to_byte(utf8::decode_at(tok, p, &len));
          if (b < 0) ok = false;
          bytes.push_back(static_cast<char>(b));
          p += len;
        }
        if (ok) tok = std::move(bytes);
        break;
      }
      case Kind::kReplace:
        replace_all(tok, s.a, s.b);
        break;
      case Kind::kMetaspace:
        replace_all(tok, s.a, " ");
        break;
      case Kind::kByteFallback:
        if (const int b = parse_byte_token(tok); b >= 0) tok = std::string(1, static_cast<char>(b));
        break;
      case Kind::kFuse:
        break;
      case Kind::kStrip: {
        if (fused_[i] || s.a.empty()) break;
        const std::string& c = s.a;
        size_t b = 0, e = tok.size();
        for (int k = 0; k < s.start && tok.compare(b, c.size(), c) == 0 && b + c.size() <= e; ++k) b += c.size();
        for (int k = 0; k < s.stop && e >= b + c.size() && tok.compare(e - c.size(), c.size(), c) == 0; ++k) e -= c.size();
        tok = tok.substr(b, e - b);
        break;
      }
    }
  }
  return tok;
}

TokenDecoder::State::State(const TokenDecoder& d)
    : d_(d), byte_runs_(d.steps_.size()), strip_left_(d.steps_.size()), strip_held_(d.steps_.size()) {
  for (size_t i = 0; i < d.steps_.size(); ++i) strip_left_[i] = d.steps_[i].start;
}

void TokenDecoder::State::push(const std::string& token, std::string& out) {
  run(0, token, out);
  ++index_;
}

void TokenDecoder::State::run(size_t i, std::string tok, std::string& out) {
  if (i == d_.steps_.size()) {
    sink_.push(tok, out);
    return;
  }
  const Step& s = d_.steps_[i];
  switch (s.kind) {
    case Kind::kByteLevel: {
      // A token with a char outside the byte map (an added token) passes through as its UTF-8.
      std::string bytes;
      bytes.reserve(tok.size());
      bool ok = true;
      for (size_t p = 0; p < tok.size() && ok;) {
        size_t len = 0;
        const int b = byte_level::char_to_byte(utf8::decode_at(tok, p, &len));
        if (b < 0) ok = false;
        bytes.push_back(static_cast<char>(b));
        p += len;
      }
      run(i + 1, ok ? std::move(bytes) : std::move(tok), out);
      return;
    }
    case Kind::kReplace:
      replace_all(tok, s.a, s.b);
      run(i + 1, std::move(tok), out);
      return;
    case Kind::kMetaspace:
      replace_all(tok, s.a, " ");
      if (index_ == 0 && !tok.empty() && tok[0] == ' ') tok.erase(0, 1);
      run(i + 1, std::move(tok), out);
      return;
    case Kind::kByteFallback: {
      const int b = parse_byte_token(tok);
      if (b >= 0) {
        // Chars complete as soon as their last byte arrives, so a long run of byte tokens (CJK text
        // in Llama-2) streams char by char instead of waiting for the run to end.
        std::string& run_bytes = byte_runs_[i];
        run_bytes.push_back(static_cast<char>(b));
        size_t p = 0;
        std::string ready;
        while (p < run_bytes.size()) {
          const utf8::Scan sc = utf8::scan(run_bytes, p);
          if (sc.status == utf8::Status::kIncomplete) break;
          if (sc.status == utf8::Status::kValid) {
            ready.append(run_bytes, p, sc.len);
          } else {
            for (size_t k = 0; k < sc.len; ++k) ready.append(utf8::kReplacement);
          }
          p += sc.len;
        }
        run_bytes.erase(0, p);
        if (!ready.empty()) run(i + 1, std::move(ready), out);
        return;
      }
      flush_from(i, out);
      run(i + 1, std::move(tok), out);
      return;
    }
    case Kind::kFuse:
      run(i + 1, std::move(tok), out);
      return;
    case Kind::kStrip: {
      const std::string& c = s.a;
      if (c.empty()) {
        run(i + 1, std::move(tok), out);
        return;
      }
      if (!d_.fused_[i]) {  // per token, as the decoder sees separate tokens
        size_t b = 0, e = tok.size();
        for (int k = 0; k < s.start && tok.compare(b, c.size(), c) == 0 && b + c.size() <= e; ++k) b += c.size();
        for (int k = 0; k < s.stop && e >= b + c.size() && tok.compare(e - c.size(), c.size(), c) == 0; ++k) e -= c.size();
        run(i + 1, tok.substr(b, e - b), out);
        return;
      }
      // After Fuse the whole text is one token: strip at the very start and hold a trailing run.
      size_t b = 0;
      while (strip_left_[i] > 0 && tok.compare(b, c.size(), c) == 0 && b + c.size() <= tok.size()) {
        b += c.size();
        --strip_left_[i];
      }
      if (b < tok.size()) strip_left_[i] = 0;
      tok.erase(0, b);
      if (s.stop > 0 && !tok.empty()) {
        tok = strip_held_[i] + tok;
        strip_held_[i].clear();
        size_t e = tok.size();
        int n = 0;
        while (n < s.stop && e >= c.size() && tok.compare(e - c.size(), c.size(), c) == 0) e -= c.size(), ++n;
        strip_held_[i] = tok.substr(e);
        tok.resize(e);
      }
      if (!tok.empty()) run(i + 1, std::move(tok), out);
      return;
    }
  }
}

// Flushes the pending byte run of ByteFallback step i into the following steps.
void TokenDecoder::State::flush_from(size_t i, std::string& out) {
  std::string& run_bytes = byte_runs_[i];
  if (run_bytes.empty()) return;
  // Only an incomplete char can be pending here: one U+FFFD per byte, as Hugging Face's ByteFallback.
  std::string text;
  for (size_t k = 0; k < run_bytes.size(); ++k) text.append(utf8::kReplacement);
  run_bytes.clear();
  run(i + 1, std::move(text), out);
}

void TokenDecoder::State::finish(std::string& out) {
  for (size_t i = 0; i < d_.steps_.size(); ++i) {
    if (d_.steps_[i].kind == Kind::kByteFallback) flush_from(i, out);
  }
  sink_.finish(out);
}

}  // namespace dpserve
