// What constrained decoding needs to know about a tokenizer, built once per tokenizer: each token's
// bytes (as it decodes mid-text; a special token's as special_token.h spells it, so it is allowed
// only where a grammar names it; EOS only where the grammar may end), which tokens a grammar can
// match at all, and a byte trie over those laid out in preorder, so one pass over an array visits
// all tokens sharing a prefix together.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "constrain/byte_set.h"

namespace dpserve {
class Tokenizer;
}

namespace dpserve::constrain {

class VocabIndex {
 public:
  // `mask_size`: the model's logits width (at least the tokenizer's vocabulary; ids without a
  // token are never allowed). `eos_ids`: the tokens that end a constrained output.
  static std::shared_ptr<const VocabIndex> from_tokenizer(const Tokenizer& tok, int64_t mask_size,
                                                          std::vector<int32_t> eos_ids);
  static std::shared_ptr<const VocabIndex> from_tokenizer(const Tokenizer& tok, int64_t mask_size);
  // Explicit vocabularies (tests): token i has bytes[i]; is_text[i] false makes it a special token.
  VocabIndex(std::vector<std::string> bytes, std::vector<bool> is_text, std::vector<int32_t> eos_ids,
             int64_t mask_size);

  int64_t mask_size() const { return mask_size_; }
  size_t mask_words() const { return size_t((mask_size_ + 63) / 64); }
  const std::string& bytes(int32_t id) const { return bytes_[size_t(id)]; }
  bool is_text(int32_t id) const { return id >= 0 && size_t(id) < is_text_.size() && is_text_[size_t(id)]; }
  bool is_eos(int32_t id) const;
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

  // The trie: node i (preorder) is reached by byte node_byte[i] from its parent, sits at depth
  // node_depth[i] (top-level nodes: 1), and its subtree is [i, node_end[i]). The tokens spelled by
  // the path to node i are tokens[tok_begin[i] .. tok_begin[i + 1]); those of the whole subtree
  // are tokens[tok_begin[i] .. tok_begin[node_end[i]]).
  size_t num_nodes() const { return node_byte.size(); }
  std::vector<uint8_t> node_byte;
  std::vector<uint16_t> node_depth;
  std::vector<int32_t> node_end;
  std::vector<int32_t> tok_begin;  // num_nodes + 1 entries
  std::vector<int32_t> tokens;
  // Every byte on node i and below it: a state that loops on all of them accepts the whole subtree.
  std::vector<ByteSet> subtree_bytes;
  size_t max_depth() const { return max_depth_; }

 private:
  void build_trie();
  std::vector<std::string> bytes_;
  std::vector<bool> is_text_;
  std::vector<int32_t> eos_ids_;
  int64_t mask_size_ = 0;
  size_t max_depth_ = 0;
};

}  // namespace dpserve::constrain
