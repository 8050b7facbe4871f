#include "constrain/matcher.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace dpserve::constrain {

Matcher::Matcher(std::shared_ptr<TokenMaskCache> cache) : cache_(std::move(cache)), pda_(cache_->automaton()) {
  pda_.start(arena_, cur_);
}

bool Matcher::step_bytes(const ConfigSet& from, const std::string& bytes, ConfigSet& out) {
  const ConfigSet* src = &from;
  for (size_t i = 0; i < bytes.size(); ++i) {
    ConfigSet* dst = i + 1 == bytes.size() ? &out : (i % 2 == 0 ? &tmp_a_ : &tmp_b_);
    pda_.step(arena_, *src, uint8_t(bytes[i]), *dst);
    if (dst->dead()) return false;
    src = dst;
  }
  return true;
}

void Matcher::fill_mask(uint64_t* mask) {
  const VocabIndex& v = cache_->vocab();
  const size_t words = v.mask_words();
  std::memset(mask, 0, words * sizeof(uint64_t));
  if (ended_) return;
  entries_.clear();
  for (const Config& c : cur_.configs) {
    entries_.push_back(cache_->get(c.rule, c.state));
    const uint64_t* acc = entries_.back()->accepted.data();
    for (size_t w = 0; w < words; ++w) mask[w] |= acc[w];
  }
  ConfigSet one, out;
  for (size_t k = 0; k < cur_.configs.size(); ++k) {
    const Config& c = cur_.configs[k];
    // On the real bottom, a token that needs the rule to end and read on has nothing to read on.
    if (c.stack == kBottom) continue;
    for (int32_t t : entries_[k]->uncertain) {
      if ((mask[size_t(t) >> 6] >> (t & 63)) & 1) continue;
      const size_t m = arena_.mark();
      one.clear();
      one.configs.push_back(c);
      if (step_bytes(one, v.bytes(t), out)) mask[size_t(t) >> 6] |= uint64_t(1) << (t & 63);
      arena_.rollback(m);
    }
  }
  if (cur_.at_bottom_end)
    for (int32_t e : v.eos_ids()) mask[size_t(e) >> 6] |= uint64_t(1) << (e & 63);
}

bool Matcher::accept(int32_t token) {
  if (ended_) return false;
  const VocabIndex& v = cache_->vocab();
  if (v.is_eos(token)) {
    if (!cur_.at_bottom_end) return false;
    ended_ = true;
    return true;
  }
  if (!v.is_text(token)) return false;
  const size_t m = arena_.mark();
  ConfigSet out;
  if (!step_bytes(cur_, v.bytes(token), out)) {
    arena_.rollback(m);
    return false;
  }
  cur_ = std::move(out);
  return true;
}

void apply_mask(const uint64_t* mask, float* logits, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t w = 0; w * 64 < n; ++w) {
    const uint64_t m = mask[w];
    if (m == ~uint64_t(0)) continue;
    float* row = logits + w * 64;
    const int64_t lim = std::min<int64_t>(64, n - w * 64);
    if (m == 0) {
      std::fill(row, row + lim, ninf);
      continue;
    }
    for (int64_t b = 0; b < lim; ++b)
      if (!((m >> b) & 1)) row[b] = ninf;
  }
}

}  // namespace dpserve::constrain
