#include "tokenizer/pre_tokenizer.h"

#include <functional>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

// Unicode White_Space, which Oniguruma's \s matches (PCRE2's \s differs on U+0085 and U+180E).
constexpr const char* kWhiteClassBody =
    "\\t\\n\\x{0B}\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string translate_pattern(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += in_class ? std::string(kWhiteClassBody) : "[" + std::string(kWhiteClassBody) + "]";
      } else if (n == 'S') {
        if (in_class) fail("tokenizer regex: \\S inside a character class is not supported: {}", p);
        out += "[^" + std::string(kWhiteClassBody) + "]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // literal ] first in a class
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex).
const char* kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

PreTokenizer::Behavior parse_behavior(const std::string& b) {
  using B = PreTokenizer::Behavior;
  if (b == "Removed") return B::kRemoved;
  if (b == "Isolated") return B::kIsolated;
  if (b == "MergedWithPrevious") return B::kMergedWithPrevious;
  if (b == "MergedWithNext") return B::kMergedWithNext;
  if (b == "Contiguous") return B::kContiguous;
  fail("tokenizer.json: Split behavior '{}' is not supported", b);
}

std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

void add_steps(const nlohmann::json& j, std::vector<PreTokenizer::Step>& steps) {
  using K = PreTokenizer::Kind;
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : j.at("pretokenizers")) add_steps(p, steps);
  } else if (type == "Split") {
    PreTokenizer::Step s{K::kSplit};
    const auto& pat = j.at("pattern");
    std::string re;
    if (pat.contains("Regex")) {
      re = pat.at("Regex").get<std::string>();
    } else {
      re = regex_escape(pat.at("String").get<std::string>());
    }
    s.regex = std::make_shared<Regex>(re);
    s.behavior = parse_behavior(j.value("behavior", "Isolated"));
    s.invert = j.value("invert", false);
    steps.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreTokenizer::Step s{K::kByteLevel};
    s.add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) s.regex = std::make_shared<Regex>(kGpt2Pattern);
    steps.push_back(std::move(s));
  } else if (type == "Metaspace") {
    PreTokenizer::Step s{K::kMetaspace};
    s.literal = j.value("replacement", std::string("\xE2\x96\x81"));
    const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    s.prepend = scheme == "never" ? 0 : scheme == "first" ? 1 : 2;
    s.split = j.value("split", true);
    steps.push_back(std::move(s));
  } else if (type == "Digits") {
    PreTokenizer::Step s{K::kDigits};
    s.individual_digits = j.value("individual_digits", false);
    s.regex = std::make_shared<Regex>(s.individual_digits ? "\\p{Nd}" : "\\p{Nd}+");
    steps.push_back(std::move(s));
  } else {
    fail("tokenizer.json: pre_tokenizer type '{}' is not supported", type);
  }
}

using Word = PreTokenizer::Word;

// Splits one word around regex matches according to `behavior`, handing each resulting word to
// `emit` as soon as it is known (a range is final once the next one starts): nothing holds all the
// matches or words of a long text at once.
template <typename Emit>
void split_by(const Regex& re, PreTokenizer::Behavior behavior, bool invert, const Word& w, const Emit& emit) {
  using B = PreTokenizer::Behavior;
  bool pending = false;       // a range is open: [pb, pe)
  size_t pb = 0, pe = 0;
  bool have_prev = false, prev_match = false;  // the previous piece, and whether it was a match
  auto flush = [&] {
    if (pending && pe > pb) emit(Word{w.text.substr(pb, pe - pb), w.at_start && pb == 0});
    pending = false;
  };
  auto start = [&](size_t b, size_t e) {
    flush();
    pending = true;
    pb = b;
    pe = e;
  };
  // One piece (begin, end, is_match), in order.
  auto piece = [&](size_t b, size_t e, bool match) {
    switch (behavior) {
      case B::kRemoved:
        if (!match) start(b, e);
        break;
      case B::kIsolated:
        start(b, e);
        break;
      case B::kMergedWithPrevious:
        if (match && pending && pe == b) {
          pe = e;
        } else {
          start(b, e);
        }
        break;
      case B::kMergedWithNext:
        if (pending && have_prev && prev_match && pe == b && !match) {
          pe = e;
        } else {
          start(b, e);
        }
        break;
      case B::kContiguous:
        if (pending && have_prev && prev_match == match) {
          pe = e;
        } else {
          start(b, e);
        }
        break;
    }
    have_prev = true;
    prev_match = match;
  };
  size_t pos = 0;
  re.for_each_match(w.text, [&](size_t b, size_t e) {
    if (b > pos) piece(pos, b, invert);
    if (e > b) piece(b, e, !invert);
    pos = e;
  });
  if (pos < w.text.size()) piece(pos, w.text.size(), invert);
  flush();
}

}  // namespace

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  const std::string translated = translate_pattern(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("tokenizer regex does not compile ({} at offset {}): {}", reinterpret_cast<char*>(msg), off, pattern);
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  for_each_match(text, [&](size_t b, size_t e) { out.push_back({b, e}); });
}

void Regex::for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const {
  auto* code = static_cast<pcre2_code*>(code_);
  struct MatchData {
    pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
    ~MatchData() { pcre2_match_data_free(md); }
  };
  thread_local MatchData md;
  size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                               PCRE2_NO_UTF_CHECK, md.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("tokenizer regex failed on input: {}", reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {
      // Empty match: step one char forward (the Rust / JS iterators do the same).
      if (b >= text.size()) break;
      size_t len;
      utf8::decode_at(text, b, &len);
      pos = b + len;
      continue;
    }
    pos = e;  // before on_match, which may run other patterns on this thread's match data
    on_match(b, e);
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j) {
  PreTokenizer p;
  add_steps(j, p.steps_);
  for (const auto& s : p.steps_) {
    if (s.kind == Kind::kByteLevel) p.byte_level_ = true;
  }
  return p;
}

void PreTokenizer::split(std::string_view text, bool at_start, std::vector<std::string>& words) const {
  for_each_word(text, at_start, [&](std::string& w) { words.push_back(std::move(w)); });
}

void PreTokenizer::for_each_word(std::string_view text, bool at_start,
                                 const std::function<void(std::string&)>& emit) const {
  if (text.empty()) return;
  run(0, Word{std::string(text), at_start}, emit);
}

// Step `k` and those after it on one word, depth first: each word a step makes goes through the
// remaining steps (and out) before the step makes the next one. Every step maps each word to words
// of its own, in order, so the words come out in the order step-by-step passes over all of them
// gave, while only one word per step is held (a long text's words used to be held at every step:
// tens of bytes each, ~20x the text in all).
void PreTokenizer::run(size_t k, Word&& w, const std::function<void(std::string&)>& emit) const {
  if (k == steps_.size()) {
    emit(w.text);
    return;
  }
  const Step& s = steps_[k];
  auto next = [&](Word&& out) { run(k + 1, std::move(out), emit); };
  switch (s.kind) {
    case Kind::kSplit:
    case Kind::kDigits:
      split_by(*s.regex, s.kind == Kind::kDigits ? Behavior::kIsolated : s.behavior,
               s.kind == Kind::kDigits ? false : s.invert, w, next);
      break;
    case Kind::kByteLevel:
      if (s.add_prefix_space && (w.text.empty() || w.text[0] != ' ')) w.text.insert(w.text.begin(), ' ');
      if (s.regex) {
        split_by(*s.regex, Behavior::kIsolated, false, w, next);
      } else {
        next(std::move(w));
      }
      break;
    case Kind::kMetaspace: {
      std::string t;
      t.reserve(w.text.size() + 8);
      if ((s.prepend == 2 || (s.prepend == 1 && w.at_start)) && w.text.compare(0, s.literal.size(), s.literal) != 0 &&
          !(w.text[0] == ' ')) {
        t += s.literal;
      }
      for (char c : w.text) {
        if (c == ' ') {
          t += s.literal;
        } else {
          t += c;
        }
      }
      if (!s.split) {
        next(Word{std::move(t), w.at_start});
        break;
      }
      // Each word starts at a replacement char (MergedWithNext).
      size_t b = 0;
      for (size_t i = s.literal.size() > 0 ? t.find(s.literal, 1) : std::string::npos; i != std::string::npos;
           i = t.find(s.literal, i + 1)) {
        if (i > b) next(Word{t.substr(b, i - b), w.at_start && b == 0});
        b = i;
      }
      if (b < t.size()) next(Word{t.substr(b), w.at_start && b == 0});
      break;
    }
  }
}

}  // namespace dpserve
