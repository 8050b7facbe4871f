#include "tokenizer/bpe_model.h"

#include <queue>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace dpserve {
namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

constexpr size_t kCacheLimit = 200000;
constexpr size_t kCacheMaxWord = 256;  // longer words are rare and would bloat the cache

}  // namespace

BpeModel::BpeModel(const nlohmann::json& m, std::vector<std::pair<std::string, int32_t>> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, bool byte_level)
    : byte_level_(byte_level) {
  if (m.value("type", "BPE") != "BPE") fail("tokenizer.json: model type '{}' is not supported (only BPE)", m.value("type", ""));
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty()) {
      fail("tokenizer.json: BPE {} is not supported", k);
    }
  }
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0) {
    fail("tokenizer.json: BPE dropout is not supported");
  }
  if (m.contains("vocab")) fail("tokenizer.json: the BPE model's vocab is not an object of token ids");
  if (m.contains("merges")) fail("tokenizer.json: the BPE model's merges are not an array");
  if (vocab.empty()) fail("tokenizer.json: the BPE model has no vocab");
  int32_t max_id = -1;
  vocab_.reserve(vocab.size());
  for (auto& [tok, id] : vocab) {
    max_id = std::max(max_id, id);
    vocab_.insert_or_assign(std::move(tok), id);  // a repeated token: the last id wins, as in a JSON document
  }
  vocab_r_.resize(max_id + 1);
  // Tokens sharing an id: the greatest wins, whatever the file's order.
  for (const auto& [tok, id] : vocab_)
    if (vocab_r_[id].empty() || tok > vocab_r_[id]) vocab_r_[id] = tok;

  merges_.reserve(merges.size());
  std::string joined;
  for (const auto& [a, b] : merges) add_merge(a, b, joined);
  BpeOptions o;
  o.byte_level = byte_level;
  o.byte_fallback = m.value("byte_fallback", false);
  o.fuse_unk = m.value("fuse_unk", false);
  o.ignore_merges = m.value("ignore_merges", false);
  if (m.contains("unk_token") && m["unk_token"].is_string()) o.unk_token = m["unk_token"].get<std::string>();
  finish(o);
}

BpeModel::BpeModel(std::vector<std::string> tokens, const std::vector<std::string>& merges, const BpeOptions& o)
    : vocab_r_(std::move(tokens)), byte_level_(o.byte_level) {
  vocab_.reserve(vocab_r_.size());
  for (size_t i = 0; i < vocab_r_.size(); ++i)
    if (!vocab_r_[i].empty()) vocab_.emplace(vocab_r_[i], static_cast<int32_t>(i));  // first id wins on repeats
  merges_.reserve(merges.size());
  std::string joined;
  for (const std::string& s : merges) {
    const size_t sp = s.find(' ', 1);
    if (sp == std::string::npos) fail("BPE merge '{}' has no space between its two tokens", s);
    const std::string_view v(s);
    add_merge(v.substr(0, sp), v.substr(sp + 1), joined);
  }
  finish(o);
}

void BpeModel::add_merge(std::string_view a, std::string_view b, std::string& joined) {
  joined.assign(a).append(b);
  const int32_t ia = token_to_id(a), ib = token_to_id(b), ic = token_to_id(joined);
  if (ia < 0 || ib < 0 || ic < 0) fail("BPE merge '{} {}' uses tokens missing from the vocabulary", a, b);
  const auto rank = static_cast<int32_t>(n_merges_++);
  merges_.emplace(pair_key(ia, ib), Merge{rank, ic});  // the first (best) rank wins on duplicates
}

void BpeModel::finish(const BpeOptions& o) {
  byte_fallback_ = o.byte_fallback;
  fuse_unk_ = o.fuse_unk;
  ignore_merges_ = o.ignore_merges;
  if (!o.unk_token.empty()) unk_id_ = token_to_id(o.unk_token);
  const auto& chars = byte_level::byte_to_char();
  for (int i = 0; i < 256; ++i) {
    byte_char_id_[i] = token_to_id(chars[i]);
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", i);
    fallback_id_[i] = token_to_id(buf);
  }
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kCacheMaxWord;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t before = out.size();
  merge(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheLimit) cache_.clear();
    cache_.emplace(std::move(key), std::vector<int32_t>(out.begin() + before, out.end()));
  }
}

void BpeModel::merge(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    int32_t whole = -1;
    if (byte_level_) {
      std::string mapped;
      const auto& chars = byte_level::byte_to_char();
      for (char c : word) mapped += chars[static_cast<uint8_t>(c)];
      whole = token_to_id(mapped);
    } else {
      whole = token_to_id(word);
    }
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }

  // Initial symbols.
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  if (byte_level_) {
    for (char c : word) {
      const int32_t id = byte_char_id_[static_cast<uint8_t>(c)];
      if (id < 0) fail("tokenizer.json: byte-level vocabulary lacks the char for byte {:#04x}", static_cast<uint8_t>(c));
      ids.push_back(id);
    }
  } else {
    bool prev_unk = false;
    for (size_t i = 0; i < word.size();) {
      size_t len = 0;
      utf8::decode_at(word, i, &len);
      const int32_t id = token_to_id(word.substr(i, len));
      if (id >= 0) {
        ids.push_back(id);
        prev_unk = false;
      } else {
        bool done = false;
        if (byte_fallback_) {
          done = true;
          for (size_t k = 0; k < len; ++k) done = done && fallback_id_[static_cast<uint8_t>(word[i + k])] >= 0;
          if (done) {
            for (size_t k = 0; k < len; ++k) ids.push_back(fallback_id_[static_cast<uint8_t>(word[i + k])]);
            prev_unk = false;
          }
        }
        if (!done) {
          if (unk_id_ < 0) fail("text has a character the vocabulary cannot spell and the model has no unk_token");
          if (!(fuse_unk_ && prev_unk)) ids.push_back(unk_id_);
          prev_unk = true;
        }
      }
      i += len;
    }
  }

  const auto n = static_cast<int32_t>(ids.size());
  if (n == 1) {
    out.push_back(ids[0]);
    return;
  }
  // Linked list of symbols; a min-heap of (rank, position) picks the next merge.
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank, pos, left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> q;
  auto push = [&](int32_t i) {
    if (i < 0 || next[i] < 0) return;
    auto it = merges_.find(pair_key(ids[i], ids[next[i]]));
    if (it != merges_.end()) q.push({it->second.rank, i, ids[i], ids[next[i]]});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!q.empty()) {
    const Cand c = q.top();
    q.pop();
    const int32_t i = c.pos;
    if (!alive[i] || next[i] < 0 || ids[i] != c.left_id || ids[next[i]] != c.right_id) continue;  // stale
    const int32_t j = next[i];
    ids[i] = merges_.find(pair_key(c.left_id, c.right_id))->second.id;
    alive[j] = 0;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

}  // namespace dpserve
