// The BPE `model` of tokenizer.json: merges applied by rank to one word, with byte-level input,
// byte fallback, <unk> fusing and ignore_merges, and a word cache (the fast path for long prompts).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dpserve {

struct BpeOptions {
  bool byte_level = false;  // words arrive as raw bytes and each byte starts as its GPT-2 char's token
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::string unk_token;  // "" for none
};

class BpeModel {
 public:
  // tokenizer.json's "model" object, whose vocab and merges were read apart from it (tokenizer_json.h):
  // (token, id) pairs, and (left, right) pairs best first. `byte_level`: see BpeOptions.
  BpeModel(const nlohmann::json& model, std::vector<std::pair<std::string, int32_t>> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, bool byte_level);
  // A vocabulary given as arrays (a GGUF file): `tokens[id]`, and the merges best first, each
  // "left right" split at its first space after the first byte (byte-level tokens hold no space).
  BpeModel(std::vector<std::string> tokens, const std::vector<std::string>& merges, const BpeOptions& options);

  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const std::string& id_to_token(int32_t id) const { return vocab_r_[id]; }
  int32_t size() const { return static_cast<int32_t>(vocab_r_.size()); }  // max id + 1

 private:
  void merge(std::string_view word, std::vector<int32_t>& out) const;
  void add_merge(std::string_view a, std::string_view b, std::string& joined);
  void finish(const BpeOptions& o);

  struct Merge {
    int32_t rank;
    int32_t id;
  };
  // Transparent: tokens are looked up by string_view, with no std::string made per lookup.
  struct TokenHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, TokenHash, std::equal_to<>> vocab_;
  std::vector<std::string> vocab_r_;
  std::unordered_map<uint64_t, Merge> merges_;
  size_t n_merges_ = 0;
  bool byte_level_;
  std::array<int32_t, 256> byte_char_id_{};   // byte-level: token of each byte's char
  std::array<int32_t, 256> fallback_id_{};     // byte_fallback: <0xNN> tokens
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  int32_t unk_id_ = -1;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace dpserve
