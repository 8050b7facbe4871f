// One request's constraint state on one rank: advanced by every token the model emits, it gives
// the set of tokens allowed next as a bitset. A pure function of the automaton, the vocabulary and
// the tokens so far, so every rank of a DP group computes the same mask without talking.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "constrain/pda.h"
#include "constrain/token_mask_cache.h"

namespace dpserve::constrain {

class Matcher {
 public:
  explicit Matcher(std::shared_ptr<TokenMaskCache> cache);

  // Writes the allowed tokens into mask[0 .. vocab.mask_words()): a token is allowed when its bytes
  // keep the output a prefix of some string of the grammar; EOS when the output is one already.
  void fill_mask(uint64_t* mask);
  // Moves past `token`. False, with the state unchanged, when the token is not allowed.
  bool accept(int32_t token);

  bool can_end() const { return !ended_ && cur_.at_bottom_end; }
  // The output is complete and nothing can follow but EOS.
  bool must_end() const { return !ended_ && cur_.configs.empty(); }
  bool ended() const { return ended_; }  // EOS was accepted
  const VocabIndex& vocab() const { return cache_->vocab(); }

 private:
  bool step_bytes(const ConfigSet& from, const std::string& bytes, ConfigSet& out);
  std::shared_ptr<TokenMaskCache> cache_;
  Pda pda_;
  StackArena arena_;
  ConfigSet cur_, tmp_a_, tmp_b_;
  std::vector<std::shared_ptr<const TokenMaskCache::Entry>> entries_;
  bool ended_ = false;
};

// Sets logits of tokens outside `mask` to -infinity.
void apply_mask(const uint64_t* mask, float* logits, int64_t n);

}  // namespace dpserve::constrain
