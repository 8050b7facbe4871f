// Added / special tokens ("<|im_end|>", "<s>") found in raw text before any model runs, matched
// leftmost-longest as Hugging Face's AddedVocabulary does, honouring lstrip / rstrip / single_word.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dpserve {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool normalized = false;  // matched against normalized text rather than the raw text
  bool lstrip = false, rstrip = false, single_word = false;
};

class AddedTokens {
 public:
  struct Segment {
    std::string_view text;  // the plain text between matches (id < 0)
    int32_t id = -1;        // the matched token
  };

  void add(const AddedToken& t);
  bool empty() const { return tokens_.empty(); }
  // Splits `text` into plain segments and matched tokens, in order. Only tokens with
  // `normalized` equal to `want_normalized` take part.
  std::vector<Segment> split(std::string_view text, bool want_normalized) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // first byte -> token indices, longest content first
  std::vector<std::vector<uint32_t>> by_first_byte_ = std::vector<std::vector<uint32_t>>(256);
};

}  // namespace dpserve
