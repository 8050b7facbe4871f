// Hugging Face `pre_tokenizer` pipelines: Split (PCRE2 regex with Unicode properties), ByteLevel,
// Metaspace, Digits, Sequence. Turns a normalized segment into the words the model encodes.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dpserve {

class Regex;  // PCRE2 pattern, JIT-compiled

class PreTokenizer {
 public:
  enum class Kind { kSplit, kByteLevel, kMetaspace, kDigits };
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    Kind kind;
    std::shared_ptr<const Regex> regex;  // Split / ByteLevel(use_regex)
    std::string literal;                 // Split on a String pattern; Metaspace replacement
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;  // ByteLevel
    int prepend = 0;                // Metaspace: 0 never, 1 first, 2 always
    bool split = true;              // Metaspace
    bool individual_digits = false; // Digits
  };

  struct Word {
    std::string text;
    bool at_start;  // begins the whole input
  };

  static PreTokenizer from_json(const nlohmann::json& j);  // null: the segment is one word
  // Appends the words of `text`. `at_start`: the segment begins the whole input (Metaspace "first").
  void split(std::string_view text, bool at_start, std::vector<std::string>& words) const;
  // The same words, each handed to `emit` (which may move from it) as soon as it is made: memory
  // for one word per step, not for every word of the text.
  void for_each_word(std::string_view text, bool at_start, const std::function<void(std::string&)>& emit) const;
  // True when a ByteLevel step is present: words are then byte strings for a byte-level model.
  bool byte_level() const { return byte_level_; }

 private:
  void run(size_t k, Word&& w, const std::function<void(std::string&)>& emit) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

// Onig-compatible regex on top of PCRE2: \s / \S mean Unicode White_Space as in the Rust tokenizers.
class Regex {
 public:
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Byte ranges [begin, end) of all non-overlapping matches in `text` (valid UTF-8).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;
  // The same ranges, each handed to `on_match` in order as it is found.
  void for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8
  std::string pattern_;
};

}  // namespace dpserve
