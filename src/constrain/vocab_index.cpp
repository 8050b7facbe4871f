#include "constrain/vocab_index.h"

#include <algorithm>
#include <numeric>

#include "constrain/special_token.h"
#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace dpserve::constrain {

namespace {
// Tokens longer than this are left out of constrained decoding (the trie's depth is 16-bit).
constexpr size_t kMaxTokenBytes = 4096;
}  // namespace

std::shared_ptr<const VocabIndex> VocabIndex::from_tokenizer(const Tokenizer& tok, int64_t mask_size,
                                                             std::vector<int32_t> eos_ids) {
  const int64_t n = tok.vocab_size();
  if (mask_size < n) mask_size = n;
  std::vector<std::string> bytes(static_cast<size_t>(n));
  std::vector<bool> text(size_t(n), false);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = int32_t(i);
    if (tok.is_special(id)) {
      // Reachable only where a grammar names it (special_token.h); EOS ids stay out (constructor).
      const std::string piece = tok.id_to_piece(id);
      if (piece.empty()) continue;
      bytes[size_t(i)] = special_token_spelling(piece);
      text[size_t(i)] = true;
      continue;
    }
    bytes[size_t(i)] = tok.token_bytes(id);
    // A token holding 0xFE / 0xFF is never part of UTF-8 text, and could spell a special token's name.
    text[size_t(i)] = !bytes[size_t(i)].empty() && bytes[size_t(i)].size() <= kMaxTokenBytes &&
                      bytes[size_t(i)].find_first_of(std::string_view("\xFE\xFF", 2)) == std::string::npos;
  }
  return std::make_shared<VocabIndex>(std::move(bytes), std::move(text), std::move(eos_ids), mask_size);
}

std::shared_ptr<const VocabIndex> VocabIndex::from_tokenizer(const Tokenizer& tok, int64_t mask_size) {
  return from_tokenizer(tok, mask_size, tok.eos_ids());
}

VocabIndex::VocabIndex(std::vector<std::string> bytes, std::vector<bool> is_text, std::vector<int32_t> eos_ids,
                       int64_t mask_size)
    : bytes_(std::move(bytes)), is_text_(std::move(is_text)), eos_ids_(std::move(eos_ids)), mask_size_(mask_size) {
  DP_CHECK(bytes_.size() == is_text_.size());
  mask_size_ = std::max<int64_t>(mask_size_, int64_t(bytes_.size()));
  for (int32_t e : eos_ids_) {
    DP_CHECK(e >= 0 && e < mask_size_, "eos id {} outside the vocabulary", e);
    if (size_t(e) < is_text_.size()) is_text_[size_t(e)] = false;  // EOS is never text under a constraint
  }
  for (size_t i = 0; i < bytes_.size(); ++i)
    if (bytes_[i].empty() || bytes_[i].size() > kMaxTokenBytes) is_text_[i] = false;
  build_trie();
}

bool VocabIndex::is_eos(int32_t id) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end();
}

void VocabIndex::build_trie() {
  std::vector<int32_t> order;
  for (size_t i = 0; i < bytes_.size(); ++i)
    if (is_text_[i]) order.push_back(int32_t(i));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return bytes_[size_t(a)] != bytes_[size_t(b)] ? bytes_[size_t(a)] < bytes_[size_t(b)] : a < b;
  });
  std::vector<int32_t> path;  // path[d - 1]: the node at depth d on the current path
  std::vector<int32_t> term;  // terminal node of each token in `order`
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = bytes_[size_t(id)];
    size_t lcp = 0;
    if (prev) {
      const size_t m = std::min(prev->size(), s.size());
      while (lcp < m && (*prev)[lcp] == s[lcp]) ++lcp;
    }
    // Nodes deeper than the common prefix are complete: their subtrees end here.
    for (size_t d = lcp; d < path.size(); ++d) node_end[size_t(path[d])] = int32_t(node_byte.size());
    path.resize(lcp);
    for (size_t d = lcp; d < s.size(); ++d) {
      node_byte.push_back(uint8_t(s[d]));
      node_depth.push_back(uint16_t(d + 1));
      node_end.push_back(-1);
      path.push_back(int32_t(node_byte.size() - 1));
    }
    max_depth_ = std::max(max_depth_, s.size());
    term.push_back(path.back());
    prev = &s;
  }
  for (int32_t p : path) node_end[size_t(p)] = int32_t(node_byte.size());
  // Terminal nodes come in preorder (a prefix sorts before its extensions), so tokens group by node.
  tok_begin.assign(node_byte.size() + 1, 0);
  for (int32_t t : term) ++tok_begin[size_t(t) + 1];
  std::partial_sum(tok_begin.begin(), tok_begin.end(), tok_begin.begin());
  tokens.resize(order.size());
  std::vector<int32_t> fill(tok_begin.begin(), tok_begin.end() - 1);
  for (size_t k = 0; k < order.size(); ++k) tokens[size_t(fill[size_t(term[k])]++)] = order[k];

  // Subtree byte sets, children folded into parents from the back of the preorder.
  const size_t n = node_byte.size();
  std::vector<int32_t> parent(n, -1), last_at_depth(max_depth_ + 1, -1);
  for (size_t i = 0; i < n; ++i) {
    parent[i] = node_depth[i] > 1 ? last_at_depth[node_depth[i] - 1] : -1;
    last_at_depth[node_depth[i]] = int32_t(i);
  }
  subtree_bytes.assign(n, ByteSet{});
  for (size_t i = n; i-- > 0;) {
    subtree_bytes[i].set(node_byte[i]);
    if (parent[i] >= 0) subtree_bytes[size_t(parent[i])] |= subtree_bytes[i];
  }
}

}  // namespace dpserve::constrain
